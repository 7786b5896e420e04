//! SRTP protect and unprotect cost per packet, in isolation: the crypto the gateway does for
//! every forwarded packet (one unprotect on the way in, one protect per subscriber on the way
//! out), through str0m's own SRTP primitives from its aws-lc-rs provider, the ones the media
//! core uses.
//!
//! Each step is what str0m's SRTP context does per RTP packet, less its bookkeeping (replay
//! window, rollover counter): for AEAD_AES_128_GCM (RFC 7714) the IV from salt, SSRC, ROC and
//! sequence number, then AES-GCM over the payload with the 12-byte RTP header as associated
//! data; for AES_CM_128_HMAC_SHA1_80 (RFC 3711) AES-CTR over the payload with the IV from
//! salt, SSRC and index, then HMAC-SHA1 over header, payload and ROC, truncated to 80 bits.
//! Payloads are the load tool's: 120 bytes (Opus-sized) and 1000 bytes (VP8-sized).
//!
//! `cargo bench --bench srtp`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use str0m::crypto::{AeadAes128Gcm, Aes128CmSha1_80, CryptoProvider, from_feature_flags};

const HEADER: [u8; 12] = [0x80, 0xe0, 0x12, 0x34, 0, 0, 0x30, 0x39, 0x20, 0, 0, 1];
const SSRC: u32 = 0x2000_0001;
const SIZES: [usize; 2] = [120, 1000];

fn gcm(c: &mut Criterion, provider: &CryptoProvider) {
    let factory = provider.srtp_provider.aead_aes_128_gcm();
    let (mut sealer, mut opener) = (factory.create_cipher([7; 16], true), factory.create_cipher([7; 16], false));
    let salt = [9u8; 12];
    let mut group = c.benchmark_group("srtp_aead_aes_128_gcm");
    for size in SIZES {
        let payload = vec![0x5a; size];
        let mut sealed = vec![0; size + AeadAes128Gcm::TAG_LEN];
        let mut opened = vec![0; size + AeadAes128Gcm::TAG_LEN];
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("protect", size), &size, |b, _| {
            let mut seq = 0u16;
            b.iter(|| {
                seq = seq.wrapping_add(1);
                let iv = AeadAes128Gcm::rtp_iv(salt, SSRC, 0, seq);
                sealer.encrypt(&iv, black_box(&HEADER), black_box(&payload), &mut sealed).unwrap();
            })
        });
        let iv = AeadAes128Gcm::rtp_iv(salt, SSRC, 0, 1);
        sealer.encrypt(&iv, &HEADER, &payload, &mut sealed).unwrap();
        group.bench_with_input(BenchmarkId::new("unprotect", size), &size, |b, _| {
            b.iter(|| {
                let iv = AeadAes128Gcm::rtp_iv(salt, SSRC, 0, 1);
                opener.decrypt(&iv, &[black_box(&HEADER)], black_box(&sealed), &mut opened).unwrap()
            })
        });
    }
    group.finish();
}

fn cm_hmac(c: &mut Criterion, provider: &CryptoProvider) {
    let factory = provider.srtp_provider.aes_128_cm_sha1_80();
    let mut cipher = factory.create_cipher([7; 16], true);
    let hmac = |key: &[u8], parts: &[&[u8]]| provider.sha1_hmac_provider.sha1_hmac(key, parts);
    let (salt, auth_key) = ([9u8; 14], [3u8; 20]);
    let mut group = c.benchmark_group("srtp_aes_cm_128_hmac_sha1_80");
    for size in SIZES {
        let payload = vec![0x5a; size];
        let mut packet = vec![0; HEADER.len() + size + Aes128CmSha1_80::HMAC_TAG_LEN];
        packet[..HEADER.len()].copy_from_slice(&HEADER);
        let body_end = HEADER.len() + size;
        group.throughput(Throughput::Elements(1));
        // Protect and unprotect are the same work: AES-CTR plus one HMAC (computed or checked).
        group.bench_with_input(BenchmarkId::new("protect", size), &size, |b, _| {
            let mut index = 0u64;
            b.iter(|| {
                index += 1;
                let iv = Aes128CmSha1_80::rtp_iv(salt, SSRC, index);
                cipher.encrypt(&iv, black_box(&payload), &mut packet[HEADER.len()..body_end]).unwrap();
                Aes128CmSha1_80::rtp_hmac(hmac, &auth_key, &mut packet, index, body_end);
            })
        });
        group.bench_with_input(BenchmarkId::new("unprotect", size), &size, |b, _| {
            let mut plain = vec![0; size];
            b.iter(|| {
                let (body, tag) = packet.split_at(body_end);
                let ok = Aes128CmSha1_80::rtp_verify(hmac, &auth_key, black_box(body), 1, tag);
                let iv = Aes128CmSha1_80::rtp_iv(salt, SSRC, 1);
                cipher.decrypt(&iv, &body[HEADER.len()..], &mut plain).unwrap();
                ok
            })
        });
    }
    group.finish();
}

fn srtp(c: &mut Criterion) {
    let provider = from_feature_flags();
    gcm(c, &provider);
    cm_hmac(c, &provider);
}

criterion_group!(benches, srtp);
criterion_main!(benches);
