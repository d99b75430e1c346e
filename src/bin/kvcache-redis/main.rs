//! `kvcache-redis`: check, benchmark and inspect a Redis or Valkey deployment for a KV cache, from the host that
//! will use it.

/// `println!` that ignores a closed stdout (`| head`), so that a run still cleans up after itself.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that ignores a closed stdout.
macro_rules! say_part {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

mod bench;
mod bench_caller;
mod check;
mod check_steps;
mod inspect;
mod target;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  kvcache-redis check redis://127.0.0.1:6379
  kvcache-redis check 'rediss://cache.internal:6380?tls_ca=/etc/ssl/cache-ca.pem' --user app
  KVCACHE_PASSWORD=... kvcache-redis check redis-cluster://10.0.0.5:7000 --user app
  kvcache-redis bench redis://127.0.0.1:6379 --value-size 4MiB --batch 8 --threads 4 --duration 20
  kvcache-redis bench valkey://127.0.0.1:6379 --read-ratio 0.9 --count 2000 --layout split --json
  kvcache-redis inspect redis://127.0.0.1:6379
  kvcache-redis inspect redis://127.0.0.1:6379 --delete-orphans --yes

Exit codes: 0 all good; 1 a check failed (or a benchmark read wrong bytes); 2 bad arguments or URL;
3 the deployment could not be reached (connection, authentication or TLS failure).
Passwords: in the URL, or --password / KVCACHE_PASSWORD; never printed.";

/// Check, benchmark and inspect a Redis or Valkey deployment (standalone or Cluster) used as an LLM KV cache.
#[derive(Parser)]
#[command(name = "kvcache-redis", version, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the topology and run a checklist of the cache contract under a temporary key namespace.
    #[command(after_help = EXAMPLES)]
    Check(check::Args),
    /// Generate a KV-chunk workload and report throughput and latency percentiles.
    #[command(after_help = EXAMPLES)]
    Bench(bench::Args),
    /// Scan every primary for LMCache-format keys: chunks and bytes per model, TTLs, orphaned split keys.
    #[command(after_help = EXAMPLES)]
    Inspect(inspect::Args),
}

/// Set by the first Ctrl-C: runs stop early and still clean up their keys. A second one exits at once.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::Relaxed) {
            std::process::exit(130);
        }
        eprintln!("interrupted: stopping and cleaning up (Ctrl-C again to quit at once)");
    });
    let result = match cli.command {
        Command::Check(args) => check::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Inspect(args) => inspect::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
