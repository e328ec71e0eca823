//! Ring benchmark: prints the figures the data-plane issue asks for.
//!
//! `cargo bench -p wsring-core --bench ring` prints:
//! - lookup latency (ns per key) on a 10-member ring,
//! - rebuild time for 100 members × vnodes,
//! - max/mean load for 10 members and 100k keys (target ≤ 1.10 with default vnodes),
//! - moved fraction for N → N+1 members (target ≤ 1.1 × 1/(N+1)),
//!
//! for the default vnodes and a few others for comparison. Figures only: no pass/fail.

use std::hint::black_box;
use std::time::Instant;

use wsring_core::ring::DEFAULT_VNODES;
use wsring_core::{Member, Ring, RingSpec};

fn ring(members: usize, vnodes: u32, bounded: Option<f64>) -> Ring {
    let members = (0..members)
        .map(|i| Member {
            name: format!("chat-{i}"),
            addr: format!("10.0.0.{i}:8081"),
            admin: format!("10.0.0.{i}:9091"),
        })
        .collect();
    Ring::build(RingSpec::new(1, vnodes, bounded, members).expect("valid spec")).expect("builds")
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user-{i}")).collect()
}

fn lookup_ns(r: &Ring, keys: &[String]) -> f64 {
    let rounds = 20;
    let start = Instant::now();
    for _ in 0..rounds {
        for k in keys {
            black_box(r.owner(black_box(k)));
        }
    }
    start.elapsed().as_nanos() as f64 / (rounds * keys.len()) as f64
}

fn rebuild_ms(members: usize, vnodes: u32) -> f64 {
    let rounds = 5;
    let start = Instant::now();
    for _ in 0..rounds {
        black_box(ring(members, vnodes, None));
    }
    start.elapsed().as_secs_f64() * 1000.0 / rounds as f64
}

fn max_over_mean(r: &Ring, keys: &[String]) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for k in keys {
        *counts
            .entry(&r.owner(k).expect("non-empty").name)
            .or_insert(0usize) += 1;
    }
    let mean = keys.len() as f64 / r.members().len() as f64;
    *counts.values().max().expect("non-empty") as f64 / mean
}

fn moved_fraction(n: usize, vnodes: u32, keys: &[String]) -> f64 {
    let (before, after) = (ring(n, vnodes, None), ring(n + 1, vnodes, None));
    let moved = keys
        .iter()
        .filter(|k| before.owner(k) != after.owner(k))
        .count();
    moved as f64 / keys.len() as f64
}

fn main() {
    let keys = keys(100_000);
    println!("wsring ring benchmark (xxh3-64, 100k keys \"user-N\", members \"chat-N\")");
    println!(
        "{:>7} {:>11} {:>18} {:>16} {:>26}",
        "vnodes", "lookup ns", "rebuild 100m (ms)", "max/mean 10m", "moved 10→11 (ideal 0.0909)"
    );
    for vnodes in [64, 256, 512, DEFAULT_VNODES, 2048] {
        let ten = ring(10, vnodes, None);
        println!(
            "{:>7} {:>11.1} {:>18.2} {:>16.3} {:>26.4}{}",
            vnodes,
            lookup_ns(&ten, &keys),
            rebuild_ms(100, vnodes),
            max_over_mean(&ten, &keys),
            moved_fraction(10, vnodes, &keys),
            if vnodes == DEFAULT_VNODES {
                "  <- default"
            } else {
                ""
            }
        );
    }
    println!(
        "\nmoved fraction N→N+1 with default vnodes ({DEFAULT_VNODES}); target ≤ 1.1 × 1/(N+1):"
    );
    for n in [1, 2, 3, 5, 10, 20, 50] {
        let frac = moved_fraction(n, DEFAULT_VNODES, &keys);
        let ideal = 1.0 / (n + 1) as f64;
        println!(
            "  {n:>2}→{:<2} moved {frac:.4}  ideal {ideal:.4}  ratio {:.3}",
            n + 1,
            frac / ideal
        );
    }
    println!("\nbounded load (10 members, 64 vnodes, 100k keys):");
    for c in [1.25, 1.10, 1.05] {
        let r = ring(10, 64, Some(c));
        println!(
            "  c = {c:.2}: max/mean {:.3} (plain 64 vnodes: {:.3}), points kept {}/640",
            max_over_mean(&r, &keys),
            max_over_mean(&ring(10, 64, None), &keys),
            r.point_count()
        );
    }
}
