//! Timing shared by both benchmark runners (the comparison runner and the alternatives crate, which includes this
//! file by path): alternated runs, medians, percentiles.

use std::time::Instant;

/// Runs each closure once per round, rotating which goes first, and returns the median seconds of each.
pub fn alternate(rounds: usize, fns: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    for f in fns.iter_mut() {
        f(); // warm-up, same for everyone
    }
    let mut times = vec![Vec::new(); fns.len()];
    for r in 0..rounds {
        for i in 0..fns.len() {
            let j = (i + r) % fns.len();
            let t = Instant::now();
            fns[j]();
            times[j].push(t.elapsed().as_secs_f64());
        }
    }
    times.into_iter().map(median).collect()
}

/// The middle value (NaN, a skipped run, sorts last).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The value at fraction `p` of the sorted samples.
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}
