//! What a receiver records: every stamped payload with its arrival time.

use std::sync::Mutex;

use crate::stamp::{self, Kind, Reading, Stamp, VideoCodec};

/// One received payload.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub stamp: Stamp,
    pub received_us: u64,
    /// The body arrived byte for byte as the sender built it.
    pub intact: bool,
    /// The codec a video payload came in; `None` for audio.
    pub codec: Option<VideoCodec>,
}

/// The arrivals of one receiver, shared by its receiving tasks.
#[derive(Debug, Default)]
pub struct Inbox {
    inner: Mutex<Recorded>,
}

#[derive(Debug, Default)]
struct Recorded {
    arrivals: Vec<Arrival>,
    /// Payloads that are not what any probe sends: damaged beyond recognition, or foreign.
    undecodable: usize,
}

impl Inbox {
    /// Records one RTP payload of `kind` as it arrives.
    pub fn record(&self, kind: Kind, payload: &[u8]) {
        let received_us = stamp::now_us();
        let read = stamp::read(kind, payload);
        let mut recorded = self.inner.lock().unwrap();
        match read {
            Some(Reading { stamp, intact, codec }) => {
                recorded.arrivals.push(Arrival { stamp, received_us, intact, codec })
            }
            None => recorded.undecodable += 1,
        }
    }

    /// Every payload received so far, in arrival order.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.inner.lock().unwrap().arrivals.clone()
    }

    /// Takes the payloads received so far, leaving none (cheaper than a copy for big runs).
    pub fn take_arrivals(&self) -> Vec<Arrival> {
        std::mem::take(&mut self.inner.lock().unwrap().arrivals)
    }

    pub fn undecodable(&self) -> usize {
        self.inner.lock().unwrap().undecodable
    }
}
