//! `check`: the topology, then a checklist of the cache contract under a temporary namespace, cleaned up after.

use std::process::ExitCode;

use kvcache_redis::{Client, ReadFrom};

use crate::check_steps::{Ctx, STEPS, e};
use crate::target::{Failure, Target, exit, plural_y, run_namespace};

/// Arguments of `check`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    target: Target,
    /// Key prefix to work under (default: a fresh `kvcache-check:<pid>:<nonce>:`); every key written starts with it.
    #[arg(long)]
    namespace: Option<String>,
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let target = &args.target;
    // The checklist reads from primaries (a replica may not have a value written a moment ago); reads from
    // replicas, when asked for, are a step of their own.
    let config = target.config()?;
    let (read_from, db) = (config.reads_from(), config.selected_database());
    let client = target.connect_with(config.clone().read_from(ReadFrom::Primary))?;
    let replicas = match read_from {
        ReadFrom::Primary => None,
        _ => Some(target.connect_with(config)?),
    };
    let shards = client
        .shards()
        .map_err(|e| crate::target::describe(&target.redacted(), &e))?;
    let (version, _) = server_info(&client, &shards[0].primary);
    let sentinels = client.sentinels();
    let kind = match (&sentinels, client.is_cluster()) {
        (Some(_), _) => "Sentinel-managed",
        (None, true) => "cluster",
        (None, false) => "standalone",
    };
    say!("target    {} ({kind}, {version}, database {})", target.redacted(), db);
    if let Some(answers) = &sentinels {
        print_sentinels(answers);
    }
    let covered: usize = shards.iter().map(|s| s.slot_count()).sum();
    say!(
        "topology  {} primar{}, {} replica(s), {covered}/{} slots covered",
        shards.len(),
        plural_y(shards.len()),
        shards.iter().map(|s| s.replicas.len()).sum::<usize>(),
        kvcache_redis::SLOTS
    );
    // Each node's availability zone (Valkey 8+), when any node reports one.
    let zones: Vec<(String, Option<String>)> = shards
        .iter()
        .flat_map(|s| std::iter::once(&s.primary).chain(&s.replicas))
        .map(|n| (n.clone(), server_info(&client, n).1))
        .collect();
    let any_zone = zones.iter().any(|(_, z)| z.is_some());
    let named = |node: &String| match zones.iter().find(|(n, _)| n == node) {
        Some((_, Some(zone))) => format!("{node} (zone {zone})"),
        _ if any_zone => format!("{node} (no zone)"),
        _ => node.clone(),
    };
    for (i, s) in shards.iter().enumerate() {
        let ranges: Vec<String> = s.slots.iter().map(|r| format!("{}-{}", r.start(), r.end())).collect();
        let replicas = if s.replicas.is_empty() {
            "none".to_string()
        } else {
            s.replicas.iter().map(named).collect::<Vec<_>>().join(", ")
        };
        say!(
            "  shard {i}  {}  slots {} ({})  replicas: {replicas}",
            named(&s.primary),
            ranges.join(","),
            s.slot_count()
        );
    }
    let ns = args.namespace.clone().unwrap_or_else(|| run_namespace("check"));
    say!("namespace {ns}");
    let mut ctx = Ctx {
        client,
        replicas: replicas.map(|c| (c, read_from)),
        ns,
        shards: shards.len(),
        written: Vec::new(),
    };
    let mut failed = 0;
    let coverage = if covered == kvcache_redis::SLOTS as usize {
        Ok(format!("all {covered} slots served"))
    } else {
        Err(format!("only {covered} of {} slots are served", kvcache_redis::SLOTS))
    };
    failed += report("slot coverage", coverage);
    let warnings = memory_policy(&ctx.client, &shards);
    for (name, step) in STEPS {
        if crate::interrupted() {
            failed += report(name, Err("not run: interrupted".into()));
            continue;
        }
        failed += report(name, step(&mut ctx));
    }
    failed += report("clean-up", clean_up(&mut ctx, &shards));
    say!(
        "{} passed, {failed} failed, {warnings} warning{}",
        STEPS.len() + 2 - failed,
        if warnings == 1 { "" } else { "s" }
    );
    Ok(exit(failed > 0))
}

/// What each Sentinel says: the primary, the replicas with their link status, or why it did not answer.
fn print_sentinels(answers: &[kvcache_redis::SentinelAnswer]) {
    let answered = answers.iter().filter(|a| a.view.is_ok()).count();
    let service = answers.first().map_or("", |a| a.service.as_str());
    say!(
        "sentinel  service {service:?}: {answered} of {} Sentinel{} answered",
        answers.len(),
        if answers.len() == 1 { "" } else { "s" }
    );
    for a in answers {
        match &a.view {
            Ok(v) => {
                let replicas: Vec<String> = v
                    .replicas
                    .iter()
                    .map(|r| {
                        let state = if r.usable() { "up" } else { "not readable" };
                        format!(
                            "{} ({state}; link {}; {})",
                            r.addr,
                            if r.link_ok { "ok" } else { "down" },
                            r.flags
                        )
                    })
                    .collect();
                say!(
                    "  {}  primary {} (epoch {}, {})  replicas: {}",
                    a.sentinel,
                    v.primary,
                    v.epoch,
                    v.flags,
                    if replicas.is_empty() {
                        "none".to_string()
                    } else {
                        replicas.join(", ")
                    }
                );
            }
            Err(e) => say!("  {}  no answer: {e}", a.sentinel),
        }
    }
}

/// Whether each primary will evict when full, as a cache must: `maxmemory` set and an eviction policy. Only
/// warns (the exit code is for the contract); returns the number of warnings.
fn memory_policy(client: &Client, shards: &[kvcache_redis::Shard]) -> usize {
    let mut warnings = 0;
    for shard in shards {
        let got = client.connect_node(&shard.primary).and_then(|mut c| {
            let replies = c.pipeline(&[["CONFIG", "GET", "maxmemory"], ["CONFIG", "GET", "maxmemory-policy"]])?;
            let value = |r: &kvcache_redis::Reply| {
                r.items()
                    .get(1)
                    .and_then(|v| v.as_bytes())
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            };
            match (&replies[0], &replies[1]) {
                (kvcache_redis::Reply::Error { code, detail }, _)
                | (_, kvcache_redis::Reply::Error { code, detail }) => Err(kvcache_redis::Error::Server {
                    node: shard.primary.clone(),
                    code: code.clone(),
                    detail: detail.clone(),
                }),
                (a, b) => Ok((value(a).unwrap_or_default(), value(b).unwrap_or_default())),
            }
        });
        let warning = match got {
            Ok((max, policy)) if max == "0" => Some(format!(
                "maxmemory is 0 (unlimited): the cache grows until the host runs out of memory; set maxmemory and \
                 an eviction policy (policy now: {policy})"
            )),
            Ok((_, policy)) if policy == "noeviction" => Some(
                "maxmemory-policy is noeviction: once full, every put fails with OOM instead of evicting old \
                 chunks (allkeys-lru suits a KV cache)"
                    .to_string(),
            ),
            Ok((max, policy)) => {
                say!(
                    "INFO  {:<26} {}: maxmemory {max} bytes, policy {policy}",
                    "memory policy",
                    shard.primary
                );
                None
            }
            Err(e) => Some(format!("could not read the memory settings ({e})")),
        };
        if let Some(w) = warning {
            say!("WARN  {:<26} {}: {w}", "memory policy", shard.primary);
            warnings += 1;
        }
    }
    warnings
}

fn report(name: &str, result: Result<String, String>) -> usize {
    match result {
        Ok(detail) => {
            say!("PASS  {name:<26} {detail}");
            0
        }
        Err(reason) => {
            say!("FAIL  {name:<26} {reason}");
            1
        }
    }
}

/// The server's name and version, and its availability zone if it reports one.
fn server_info(client: &Client, node: &str) -> (String, Option<String>) {
    let info = client
        .connect_node(node)
        .and_then(|mut c| c.query(&["INFO", "server"]))
        .ok()
        .and_then(|r| r.as_bytes().map(|b| String::from_utf8_lossy(b).into_owned()))
        .unwrap_or_default();
    let field = |name: &str| info.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    let version = match (field("valkey_version:"), field("redis_version:")) {
        (Some(v), _) => format!("Valkey {v}"),
        (None, Some(v)) => format!("Redis {v}"),
        _ => "version unknown".into(),
    };
    let zone = field("availability_zone:")
        .filter(|z| !z.is_empty())
        .map(str::to_string);
    (version, zone)
}

fn clean_up(ctx: &mut Ctx, shards: &[kvcache_redis::Shard]) -> Result<String, String> {
    let mut removed = 0;
    for r in ctx.client.batched_remove(&ctx.written).map_err(e)? {
        removed += usize::from(r.map_err(e)?);
    }
    // Nothing of this run may be left on any primary.
    let pattern = format!("{}*", glob_escape(&ctx.ns));
    for shard in shards {
        let mut conn = ctx.client.connect_node(&shard.primary).map_err(e)?;
        let mut found = 0;
        crate::inspect::scan(&mut conn, &pattern, 10_000_000, |_, keys| {
            found += keys.len();
            Ok(())
        })
        .map_err(e)?;
        if found > 0 {
            return Err(format!("{found} keys of this run left on {}", shard.primary));
        }
    }
    Ok(format!("{removed} keys removed, none left under the namespace"))
}

/// Escapes a literal for a `SCAN MATCH` pattern.
pub fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
