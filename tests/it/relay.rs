//! A UDP relay that a test puts between one webrtc-rs client and the gateway's media port, to
//! impair the path as a poor network does: random loss and a fixed delay both ways, and a
//! bandwidth limit with a router's queue towards the client. The gateway only ever sees the relay's address and
//! answers it; nothing is sent to an address that did not send first.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// How much a slow link queues before it drops, as a router's buffer does.
const SLOW_LINK_QUEUE: Duration = Duration::from_millis(200);

/// What the relay does to the path.
#[derive(Debug, Clone, Copy, Default)]
pub struct Impairment {
    /// The fraction (0 to 1) of datagrams dropped in each direction, at random.
    pub loss: f64,
    /// How long every datagram takes, in each direction (half the round trip it adds).
    pub delay: Duration,
    /// At most this many bits per second towards the client, queuing up to
    /// [`SLOW_LINK_QUEUE`] and dropping beyond; no limit when None.
    pub down_bps: Option<f64>,
}

/// Starts a relay on `ip` towards the gateway's media port at `gateway`, and returns the
/// address the client should use in place of the gateway's.
pub async fn start(ip: IpAddr, gateway: SocketAddr, impairment: Impairment) -> SocketAddr {
    let front = Arc::new(UdpSocket::bind((ip, 0)).await.unwrap());
    let back = Arc::new(UdpSocket::bind((ip, 0)).await.unwrap());
    let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let address = front.local_addr().unwrap();
    let front_for_down = front.clone();

    let up = delayed_link(back.clone(), move || Some(gateway));
    let up_client = client.clone();
    tokio::spawn(async move {
        let mut dice = Dice::new(0x5eed_0001);
        let mut buf = vec![0u8; 2048];
        while let Ok((len, from)) = front.recv_from(&mut buf).await {
            *up_client.lock().unwrap() = Some(from);
            if !dice.below(impairment.loss) {
                let deliver_at = tokio::time::Instant::now() + impairment.delay;
                if up.send((deliver_at, buf[..len].to_vec())).is_err() {
                    break;
                }
            }
        }
    });

    let down = delayed_link(front_for_down, move || *client.lock().unwrap());
    tokio::spawn(async move {
        let mut dice = Dice::new(0x5eed_0002);
        let mut buf = vec![0u8; 2048];
        let mut link_free_at = tokio::time::Instant::now();
        while let Ok((len, _)) = back.recv_from(&mut buf).await {
            if dice.below(impairment.loss) {
                continue;
            }
            let now = tokio::time::Instant::now();
            let mut leaves_at = now;
            if let Some(bps) = impairment.down_bps {
                let start = link_free_at.max(now);
                if start - now > SLOW_LINK_QUEUE {
                    continue; // the buffer is full: dropped
                }
                link_free_at = start + Duration::from_secs_f64(len as f64 * 8.0 / bps);
                leaves_at = link_free_at;
            }
            if down.send((leaves_at + impairment.delay, buf[..len].to_vec())).is_err() {
                break;
            }
        }
    });
    address
}

/// One direction of the link: datagrams queued with the time each is due are sent from
/// `socket` to wherever `to` says then, in order.
fn delayed_link(
    socket: Arc<UdpSocket>,
    to: impl Fn() -> Option<SocketAddr> + Send + 'static,
) -> mpsc::UnboundedSender<(tokio::time::Instant, Vec<u8>)> {
    let (queue, mut queued) = mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    tokio::spawn(async move {
        while let Some((at, datagram)) = queued.recv().await {
            tokio::time::sleep_until(at).await;
            if let Some(to) = to() {
                let _ = socket.send_to(&datagram, to).await;
            }
        }
    });
    queue
}

/// A small xorshift generator: loss at random, so that it falls on every stream alike rather
/// than in step with the media's own packet pattern.
struct Dice(u64);

impl Dice {
    fn new(seed: u64) -> Self {
        Dice(seed)
    }

    /// True with probability `p`.
    fn below(&mut self, p: f64) -> bool {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let uniform = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        uniform < p
    }
}
