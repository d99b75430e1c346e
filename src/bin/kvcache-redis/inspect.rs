//! `inspect`: scans every primary for LMCache-format keys (framed, raw and split layouts) and reports chunks and
//! bytes per model, the TTL distribution and orphaned split-layout keys; can remove orphaned metadata safely.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::process::ExitCode;

use bytes::Bytes;
use kvcache_redis::{ChunkKey, Error, NodeConnection, Slot, SplitNaming};

use crate::target::{Failure, Target, describe, exit, human, plural_y};

/// Arguments of `inspect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    target: Target,
    /// Only keys matching this `SCAN MATCH` pattern.
    #[arg(long = "match", default_value = "*")]
    pattern: String,
    /// Stop after this many keys per primary.
    #[arg(long, default_value_t = 1_000_000)]
    max_keys: usize,
    /// Remove orphaned split-layout metadata (metadata whose kv_bytes is gone), each only if it is still the same
    /// orphan, atomically on the server, as the chunk layer does.
    #[arg(long)]
    delete_orphans: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
}

/// Iterates `SCAN MATCH pattern TYPE string` over one node, calling `page` with the connection and each page of
/// keys as it comes (so memory stays at one page), up to `max` keys.
pub fn scan(
    conn: &mut NodeConnection,
    pattern: &str,
    max: usize,
    mut page: impl FnMut(&mut NodeConnection, Vec<Vec<u8>>) -> Result<(), Error>,
) -> Result<usize, Error> {
    let (mut cursor, mut seen) = ("0".to_string(), 0);
    loop {
        let node = conn.node().to_string();
        let reply = conn
            .query(&["SCAN", &cursor, "MATCH", pattern, "COUNT", "1000", "TYPE", "string"])?
            .into_result(&node)?;
        let items = reply.items();
        cursor = items
            .first()
            .and_then(|c| c.as_bytes())
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .ok_or_else(|| Error::Protocol {
                node: node.clone(),
                detail: "SCAN reply without a cursor".into(),
            })?;
        let keys: Vec<Vec<u8>> = items
            .get(1)
            .map(|k| {
                k.items()
                    .iter()
                    .filter_map(|k| k.as_bytes().map(<[u8]>::to_vec))
                    .collect()
            })
            .unwrap_or_default();
        seen += keys.len();
        if !keys.is_empty() {
            page(conn, keys)?;
        }
        if cursor == "0" || seen >= max {
            return Ok(seen);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Part {
    Kv,
    Meta,
}

/// What a key name is.
enum Name {
    Whole(ChunkKey),
    Split(ChunkKey, String, SplitNaming, Part),
    Other,
}

fn classify(name: &str) -> Name {
    let split = |base: &str, naming, part| match base.parse::<ChunkKey>() {
        Ok(k) => Name::Split(k, base.to_string(), naming, part),
        Err(_) => Name::Other,
    };
    if let Some(inner) = name.strip_prefix('{') {
        if let Some(base) = inner.strip_suffix("}:kv_bytes") {
            return split(base, SplitNaming::HashTagged, Part::Kv);
        }
        if let Some(base) = inner.strip_suffix("}:metadata") {
            return split(base, SplitNaming::HashTagged, Part::Meta);
        }
    }
    // Colon before plain: `K:kv_bytes` also ends in `kv_bytes`.
    if let Some(base) = name.strip_suffix(":kv_bytes")
        && let found @ Name::Split(..) = split(base, SplitNaming::Colon, Part::Kv)
    {
        return found;
    }
    if let Some(base) = name.strip_suffix(":metadata")
        && let found @ Name::Split(..) = split(base, SplitNaming::Colon, Part::Meta)
    {
        return found;
    }
    if let Some(base) = name.strip_suffix("kv_bytes") {
        return split(base, SplitNaming::Plain, Part::Kv);
    }
    if let Some(base) = name.strip_suffix("metadata") {
        return split(base, SplitNaming::Plain, Part::Meta);
    }
    match name.parse::<ChunkKey>() {
        Ok(k) => Name::Whole(k),
        Err(_) => Name::Other,
    }
}

#[derive(Default)]
struct ModelStats {
    framed: u64,
    raw: u64,
    split: u64,
    bytes: u64,
}

const TTL_BUCKETS: [&str; 5] = ["no TTL", "< 1 min", "< 1 h", "< 1 day", ">= 1 day"];

fn ttl_bucket(pttl_ms: i64) -> usize {
    match pttl_ms {
        ..0 => 0,
        0..60_000 => 1,
        60_000..3_600_000 => 2,
        3_600_000..86_400_000 => 3,
        _ => 4,
    }
}

/// One split chunk's keys as found: (key name, length) of each part.
#[derive(Default)]
struct SplitFound {
    model: String,
    kv: Option<(Vec<u8>, u64)>,
    meta: Option<(Vec<u8>, u64)>,
}

/// An orphaned metadata key and the kv_bytes key it should have.
type Orphan = (Vec<u8>, Vec<u8>);

/// What a scan found.
#[derive(Default)]
struct Inventory {
    models: BTreeMap<String, ModelStats>,
    ttls: [u64; 5],
    splits: HashMap<(String, SplitNaming), SplitFound>,
    scanned: usize,
    other: u64,
    other_bytes: u64,
}

impl Inventory {
    /// Counts one key: its name, length, TTL in ms (negative: none) and whether it starts with a frame's magic.
    fn add(&mut self, key: Vec<u8>, len: u64, pttl: i64, magic: bool) {
        let name = String::from_utf8_lossy(&key).into_owned();
        match classify(&name) {
            Name::Other => {
                self.other += 1;
                self.other_bytes += len;
                return;
            }
            Name::Whole(k) => {
                let m = self.models.entry(k.model).or_default();
                if magic {
                    m.framed += 1;
                } else {
                    m.raw += 1;
                }
                m.bytes += len;
            }
            Name::Split(k, base, naming, part) => {
                self.models.entry(k.model.clone()).or_default().bytes += len;
                let found = self.splits.entry((base, naming)).or_default();
                found.model = k.model;
                match part {
                    Part::Kv => found.kv = Some((key, len)),
                    Part::Meta => found.meta = Some((key, len)),
                }
            }
        }
        self.ttls[ttl_bucket(pttl)] += 1;
    }

    /// Pairs up split chunks: complete ones are counted per model; returns the orphaned metadata keys (with the
    /// kv_bytes key each should have), sorted, and how many kv_bytes have no metadata (a put in progress).
    fn find_orphans(&mut self) -> (Vec<Orphan>, u64) {
        let mut orphans = Vec::new();
        let mut incomplete = 0;
        for ((base, naming), found) in &self.splits {
            match (&found.kv, &found.meta) {
                (Some(_), Some(_)) => self.models.entry(found.model.clone()).or_default().split += 1,
                (None, Some((meta, _))) => {
                    let kv = match naming {
                        SplitNaming::HashTagged => format!("{{{base}}}:kv_bytes"),
                        SplitNaming::Plain => format!("{base}kv_bytes"),
                        SplitNaming::Colon => format!("{base}:kv_bytes"),
                        _ => continue,
                    };
                    orphans.push((meta.clone(), kv.into_bytes()));
                }
                (Some(_), None) => incomplete += 1,
                (None, None) => {}
            }
        }
        orphans.sort();
        (orphans, incomplete)
    }
}

/// Runs the phases: scan every primary, find orphans, report, and delete the orphans when asked.
pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let target = &args.target;
    let config = target.config()?;
    let db = config.selected_database();
    let client = target.connect_with(config)?;
    let mut inventory = scan_all(&client, &args, db)?;
    let (orphans, incomplete) = inventory.find_orphans();
    report(&args, &inventory, &orphans, incomplete);
    if !args.delete_orphans || orphans.is_empty() {
        return Ok(exit(false));
    }
    if !args.yes && !confirm(orphans.len()) {
        say!("nothing deleted");
        return Ok(exit(false));
    }
    delete(&client, target, &orphans)
}

/// Scans every primary, a page of keys at a time, reading each key's length, TTL and first bytes in one pipeline.
fn scan_all(client: &kvcache_redis::Client, args: &Args, db: u32) -> Result<Inventory, Failure> {
    let target = &args.target;
    let shards = client.shards().map_err(|e| describe(&target.redacted(), &e))?;
    say!(
        "target    {} ({}, {} primar{}, database {db})",
        target.redacted(),
        if client.is_cluster() { "cluster" } else { "standalone" },
        shards.len(),
        plural_y(shards.len())
    );
    let mut inventory = Inventory::default();
    for shard in &shards {
        let mut conn = client
            .connect_node(&shard.primary)
            .map_err(|e| describe(&shard.primary, &e))?;
        inventory.scanned += scan(&mut conn, &args.pattern, args.max_keys, |conn, keys| {
            let commands: Vec<Vec<Vec<u8>>> = keys
                .iter()
                .flat_map(|k| {
                    [
                        vec![b"STRLEN".to_vec(), k.clone()],
                        vec![b"PTTL".to_vec(), k.clone()],
                        vec![b"GETRANGE".to_vec(), k.clone(), b"0".to_vec(), b"3".to_vec()],
                    ]
                })
                .collect();
            let replies = conn.pipeline(&commands)?;
            for (key, r) in keys.into_iter().zip(replies.chunks(3)) {
                let len = r[0].as_int().unwrap_or(0).max(0) as u64;
                let pttl = r[1].as_int().unwrap_or(-1);
                let magic = r[2].as_bytes().unwrap_or_default() == b"KVCR";
                inventory.add(key, len, pttl, magic);
            }
            Ok(())
        })
        .map_err(|e| describe(&shard.primary, &e))?;
    }
    Ok(inventory)
}

/// Prints chunks and bytes per model, the TTL distribution, the orphans and the keys of other formats.
fn report(args: &Args, inv: &Inventory, orphans: &[Orphan], incomplete: u64) {
    say!("scanned   {} string keys (pattern {:?})", inv.scanned, args.pattern);
    say!();
    let row = |name: &str, m: &ModelStats| {
        say!(
            "{:<48} {:>8} {:>8} {:>8} {:>12}",
            name,
            m.framed,
            m.raw,
            m.split,
            human(m.bytes)
        );
    };
    say!(
        "{:<48} {:>8} {:>8} {:>8} {:>12}",
        "model",
        "framed",
        "raw",
        "split",
        "bytes"
    );
    let mut total = ModelStats::default();
    for (model, m) in &inv.models {
        row(model, m);
        total.framed += m.framed;
        total.raw += m.raw;
        total.split += m.split;
        total.bytes += m.bytes;
    }
    row("total", &total);
    say!();
    let ttl: Vec<String> = TTL_BUCKETS
        .iter()
        .zip(inv.ttls)
        .map(|(name, n)| format!("{name}: {n}"))
        .collect();
    say!("TTL       {}", ttl.join(", "));
    say!(
        "orphans   {} metadata key(s) without kv_bytes; {incomplete} kv_bytes without metadata (a put in progress \
         or cut short: left alone)",
        orphans.len()
    );
    say!(
        "other     {} key(s) not in LMCache's format ({})",
        inv.other,
        human(inv.other_bytes)
    );
    for (meta, _) in orphans.iter().take(10) {
        say!("  orphan  {}", String::from_utf8_lossy(meta));
    }
}

/// Removes each orphaned metadata key only if it still holds what it held and its kv_bytes is still gone,
/// atomically on the server; plain names whose two keys lie in different Cluster slots are left (and said so).
fn delete(client: &kvcache_redis::Client, target: &Target, orphans: &[Orphan]) -> Result<ExitCode, Failure> {
    let metas: Vec<&[u8]> = orphans.iter().map(|(m, _)| &m[..]).collect();
    let kvs: Vec<&[u8]> = orphans.iter().map(|(_, k)| &k[..]).collect();
    let values: Vec<Option<Bytes>> = client
        .batched_get(&metas)
        .map_err(|e| describe(&target.redacted(), &e))?
        .into_iter()
        .map(|r| r.ok().flatten())
        .collect();
    let (mut deleted, mut kept, mut failed, mut apart) = (0, 0, 0, 0);
    let mut to_delete = (Vec::new(), Vec::new(), Vec::new());
    for ((m, k), v) in metas.iter().zip(&kvs).zip(values) {
        match v {
            // Plain names on a Cluster: the two keys may live on different nodes, where no atomic check is possible.
            Some(_) if client.is_cluster() && Slot::of(m) != Slot::of(k) => apart += 1,
            Some(v) => {
                to_delete.0.push(*m);
                to_delete.1.push(*k);
                to_delete.2.push(v);
            }
            None => kept += 1, // gone meanwhile
        }
    }
    let results = client
        .remove_orphaned_metadata(&to_delete.0, &to_delete.1, &to_delete.2)
        .map_err(|e| describe(&target.redacted(), &e))?;
    for r in results {
        match r {
            Ok(true) => deleted += 1,
            Ok(false) => kept += 1,
            Err(e) => {
                failed += 1;
                eprintln!("  could not delete: {e}");
            }
        }
    }
    say!(
        "deleted   {deleted} orphaned metadata key(s); {kept} changed meanwhile and kept; {apart} left (plain names \
         in different slots: no atomic check possible); {failed} failed"
    );
    Ok(exit(failed > 0))
}

fn confirm(n: usize) -> bool {
    say_part!("delete {n} orphaned metadata key(s)? [y/N] ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim(), "y" | "Y" | "yes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_key_names() {
        let k = "ns:llama@1@0@abc@bfloat16";
        assert!(matches!(classify(k), Name::Whole(ref c) if c.model == "ns:llama"));
        assert!(matches!(
            classify(&format!("{{{k}}}:kv_bytes")),
            Name::Split(_, ref b, SplitNaming::HashTagged, Part::Kv) if b == k
        ));
        assert!(matches!(
            classify(&format!("{k}metadata")),
            Name::Split(_, ref b, SplitNaming::Plain, Part::Meta) if b == k
        ));
        assert!(matches!(
            classify(&format!("{k}:kv_bytes")),
            Name::Split(_, ref b, SplitNaming::Colon, Part::Kv) if b == k
        ));
        assert!(matches!(
            classify(&format!("{k}:metadata")),
            Name::Split(_, ref b, SplitNaming::Colon, Part::Meta) if b == k
        ));
        assert!(matches!(classify("session:42"), Name::Other));
        assert!(matches!(classify("{x}:kv_bytes"), Name::Other));
    }

    #[test]
    fn an_inventory_pairs_split_keys_and_finds_orphans() {
        let mut inv = Inventory::default();
        let k = |h: &str| format!("m@1@0@{h}@bfloat16");
        inv.add(format!("{{{}}}:kv_bytes", k("a")).into_bytes(), 10, -1, false);
        inv.add(format!("{{{}}}:metadata", k("a")).into_bytes(), 28, -1, false);
        inv.add(format!("{{{}}}:metadata", k("b")).into_bytes(), 28, 5_000, false);
        inv.add(format!("{}kv_bytes", k("c")).into_bytes(), 10, -1, false);
        inv.add(k("d").into_bytes(), 50, -1, true);
        inv.add(b"unrelated".to_vec(), 7, -1, false);
        let (orphans, incomplete) = inv.find_orphans();
        assert_eq!(
            orphans,
            vec![(
                format!("{{{}}}:metadata", k("b")).into_bytes(),
                format!("{{{}}}:kv_bytes", k("b")).into_bytes()
            )]
        );
        assert_eq!(incomplete, 1);
        let m = &inv.models["m"];
        assert_eq!((m.framed, m.raw, m.split, m.bytes), (1, 0, 1, 10 + 28 + 28 + 10 + 50));
        assert_eq!((inv.other, inv.other_bytes), (1, 7));
        assert_eq!(inv.ttls, [4, 1, 0, 0, 0]);
    }

    #[test]
    fn buckets_ttls() {
        assert_eq!(ttl_bucket(-1), 0);
        assert_eq!(ttl_bucket(59_999), 1);
        assert_eq!(ttl_bucket(60_000), 2);
        assert_eq!(ttl_bucket(86_400_000), 4);
    }
}
