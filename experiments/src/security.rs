//! `experiments security`: the costs of the security layer (paper figures 12 and 13), measured
//! with the same code the peers run: RSA key-pair generation per key size, and per chunk of the
//! paper-like clip the keyed hash (HMAC-SHA256 tag), the SHA-256 digest, the handshake's nonce
//! and the integrity check (tag verification), against the paper's 9.436 ms per chunk; and the
//! broadcaster's Ed25519 signature and its check, which this implementation adds.

use crate::plot::{self, format_value};
use crate::stats::{median, percentile};
use anyhow::Context;
use bytes::Bytes;
use indicatif::ProgressBar;
use ownstream_core::auth::Identity;
use ownstream_core::frame::{Chunk, ChunkSigner, SigningKey, StreamKey};
use ownstream_core::ids::ChunkSeq;
use ownstream_core::webm::{ChunkKind, Chunker, ChunkerConfig};
use rand::RngExt;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

/// The paper's integrity check per chunk (section IV.F), each side.
pub(crate) const PAPER_INTEGRITY_MS: f64 = 9.436;

/// One measured operation.
pub(crate) struct Measure {
    /// What was timed.
    pub operation: String,
    /// Timings, ms.
    pub samples: Vec<f64>,
}

impl Measure {
    fn median(&self) -> f64 {
        median(&self.samples).unwrap_or(0.0)
    }
}

/// Times `f` `n` times.
fn time(operation: &str, n: usize, mut f: impl FnMut(usize)) -> Measure {
    let samples = (0..n)
        .map(|i| {
            let t = Instant::now();
            f(i);
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    Measure {
        operation: operation.to_string(),
        samples,
    }
}

/// The media chunks of `clip`.
fn chunks_of(clip: &Path) -> anyhow::Result<Vec<Bytes>> {
    let data = std::fs::read(clip).with_context(|| format!("cannot read {}", clip.display()))?;
    let mut chunker = Chunker::new(ChunkerConfig::default());
    chunker.handle_input(&data)?;
    chunker.handle_eof()?;
    let chunks: Vec<Bytes> = std::iter::from_fn(|| chunker.poll_chunk())
        .filter(|c| c.kind == ChunkKind::Media)
        .map(|c| c.bytes)
        .collect();
    anyhow::ensure!(!chunks.is_empty(), "{} holds no media", clip.display());
    Ok(chunks)
}

/// Runs the measurements; `scale` divides the repetitions (quick mode).
pub(crate) fn run(out: &Path, clip: &Path, quick: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let reps = |full: usize| if quick { (full / 10).max(1) } else { full };
    // Key generation time varies tenfold with where the primes fall: enough runs for a stable
    // median, kept to about a minute for the larger keys.
    let sizes = [
        (1024, reps(100)),
        (2048, reps(50)),
        (3072, reps(30)),
        (4096, reps(20)),
    ];
    let total: usize = sizes.iter().map(|s| s.1).sum();
    let bar = ProgressBar::new(total as u64).with_message("RSA key pairs");
    let mut keygen = Vec::new();
    for (bits, n) in sizes {
        keygen.push(time(&format!("RSA-{bits} key pair"), n, |_| {
            Identity::generate(&mut rand::rng(), bits).expect("key generation");
            bar.inc(1);
        }));
    }
    bar.finish_and_clear();

    let chunks = chunks_of(clip)?;
    let sizes: Vec<f64> = chunks.iter().map(|c| c.len() as f64).collect();
    let key = StreamKey::random(&mut rand::rng());
    let signing = SigningKey::random(&mut rand::rng());
    let public = signing.verifying_key();
    let signer = ChunkSigner::new("s", key.clone(), signing);
    let n = reps(1000);
    let pick = |i: usize| chunks[i % chunks.len()].clone();
    let signed: Vec<Chunk> = chunks
        .iter()
        .enumerate()
        .map(|(i, c)| signer.sign(ChunkSeq(i as u64 + 1), 0, 0, 0, c.clone()))
        .collect();
    let ops = vec![
        time("keyed hash (HMAC-SHA256 tag)", n, |i| {
            let mut c = signed[i % signed.len()].clone();
            c.retag(&key);
            std::hint::black_box(c);
        }),
        time(
            "broadcaster signature (Ed25519 sign, tag included)",
            n,
            |i| {
                let c = signer.sign(ChunkSeq(1), 0, 0, 0, pick(i));
                std::hint::black_box(c);
            },
        ),
        time("origin check (Ed25519 verify)", n, |i| {
            let c = &signed[i % signed.len()];
            c.verify_signature(&public, &key, "s")
                .expect("a signed chunk verifies");
        }),
        time("SHA-256 digest", n, |i| {
            std::hint::black_box(Sha256::digest(pick(i)));
        }),
        time("nonce (two 128-bit random numbers)", n, |_| {
            let nonce: [u8; 32] = rand::rng().random();
            std::hint::black_box(nonce);
        }),
        time("integrity check (verify the tag)", n, |i| {
            let c = &signed[i % signed.len()];
            c.verify(&key).expect("a signed chunk verifies");
        }),
    ];
    write_outputs(out, clip, &keygen, &ops, &sizes, quick)
}

fn write_outputs(
    out: &Path,
    clip: &Path,
    keygen: &[Measure],
    ops: &[Measure],
    chunk_sizes: &[f64],
    quick: bool,
) -> anyhow::Result<()> {
    let mut csv = String::from("operation,samples,median_ms,p95_ms,min_ms,max_ms\n");
    for m in keygen.iter().chain(ops) {
        let min = m.samples.iter().copied().fold(f64::MAX, f64::min);
        let max = m.samples.iter().copied().fold(0.0, f64::max);
        writeln!(
            csv,
            "\"{}\",{},{:.6},{:.6},{:.6},{:.6}",
            m.operation,
            m.samples.len(),
            m.median(),
            percentile(&m.samples, 95.0).unwrap_or(0.0),
            min,
            max
        )?;
    }
    std::fs::write(out.join("security.csv"), csv)?;
    let bars: Vec<(String, f64)> = keygen
        .iter()
        .map(|m| (m.operation.replace(" key pair", ""), m.median()))
        .collect();
    plot::bar_chart(
        &out.join("fig12-rsa-keygen"),
        "RSA key-pair generation (median)",
        "milliseconds",
        &bars,
        None,
    )?;
    let bars: Vec<(String, f64)> = ops
        .iter()
        .map(|m| {
            let short = m.operation.split(" (").next().unwrap_or(&m.operation);
            (short.to_string(), m.median())
        })
        .collect();
    plot::bar_chart(
        &out.join("fig13-security-overhead"),
        "Security layer cost per chunk (median)",
        "milliseconds",
        &bars,
        Some(("paper: integrity check 9.436 ms", PAPER_INTEGRITY_MS)),
    )?;
    let chunk_median = median(chunk_sizes).unwrap_or(0.0);
    let integrity = ops.last().map_or(0.0, Measure::median);
    let mut md = String::new();
    writeln!(md, "# Security layer costs\n")?;
    writeln!(
        md,
        "Measured by `experiments security{}` on {}, with the peers' own code (`ownstream-core`, release build). Chunks: the {} media chunks of `{}` (median {:.0} KB).\n",
        if quick { " --quick" } else { "" },
        crate::machine(),
        chunk_sizes.len(),
        clip.file_name().map_or_else(String::new, |f| f.to_string_lossy().to_string()),
        chunk_median / 1000.0,
    )?;
    writeln!(
        md,
        "| operation | runs | median | p95 | paper |\n|---|---:|---:|---:|---:|"
    )?;
    for m in keygen.iter().chain(ops) {
        let paper = if m.operation.starts_with("integrity") {
            format!("{PAPER_INTEGRITY_MS} ms")
        } else {
            "figure only".into()
        };
        writeln!(
            md,
            "| {} | {} | {} ms | {} ms | {paper} |",
            m.operation,
            m.samples.len(),
            format_value(m.median()),
            format_value(percentile(&m.samples, 95.0).unwrap_or(0.0))
        )?;
    }
    writeln!(
        md,
        "\nThe paper reports 9.436 ms per chunk for the integrity check on each side; here it takes {} ms, {:.0} times less, on chunks of about {:.0} KB (the paper does not give its chunk size). The paper prints the other values only as bars in figures 12 and 13, without numbers, so they cannot be set side by side; the paper used 1024-bit keys, ownstream 2048-bit by default.\n\nCharts: `fig12-rsa-keygen.svg/png`, `fig13-security-overhead.svg/png`; raw numbers: `security.csv`.",
        format_value(integrity),
        PAPER_INTEGRITY_MS / integrity.max(1e-9),
        chunk_median / 1000.0
    )?;
    std::fs::write(out.join("summary.md"), md)?;
    Ok(())
}
