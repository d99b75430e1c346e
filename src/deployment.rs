//! What kind of deployment the client talks to (standalone, Cluster, Sentinel-managed) and where its reads go.

/// How the client finds out whether it talks to a Cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Ask the first reachable seed (`CLUSTER SLOTS`); a server without cluster support means standalone.
    Auto,
    /// One server owns every key.
    Standalone,
    /// A Redis / Valkey Cluster; the slot map is discovered from the seeds.
    Cluster,
}

/// Where reads (`get`, `batched_get`, `exists`, `batched_contains`, non-blocking gets) go. Writes always go to
/// primaries. KV-cache keys are content-addressed (a key's bytes never change), so a replica can at worst miss a
/// chunk that was just written, never return other bytes.
///
/// Only replicas that are up and linked to their primary are read from: under Sentinel, those that
/// `SENTINEL REPLICAS` does not flag down or disconnected; in a Cluster, those whose `INFO replication` says
/// `master_link_status:up`. Both lists are re-read every 1-2 s. A replica that stays silent for 100 ms while
/// reads are owed (or refuses them, or its connection fails) is avoided by every worker for 2 s, and the reads
/// waiting on it are resent to the primary or another replica at once. On a plain standalone URL (no replicas
/// known) anything but `Primary` is a configuration error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReadFrom {
    /// Every read goes to the primary.
    #[default]
    Primary,
    /// Reads go to the replicas (round robin) when any is up, else to the primary.
    Replica,
    /// Reads go round robin over the primary and its replicas.
    Spread,
    /// Reads go to the replicas in the client's availability zone ([`Config::client_az`](crate::Config::client_az)),
    /// round robin; when none of them is usable, to any replica; when none is, to the primary. Named as in
    /// valkey-glide. Each node's zone is what it reports itself (Valkey 8+, `availability-zone`), re-read with the
    /// map; a node that reports none counts as another zone.
    AzAffinity,
    /// Like [`AzAffinity`](Self::AzAffinity), with the primary next when it is in the client's zone: replicas in
    /// the zone, then the primary if it is in the zone, then any replica, then the primary.
    AzAffinityReplicasAndPrimary,
}

impl ReadFrom {
    /// Whether this policy prefers nodes in the client's zone.
    pub(crate) fn by_zone(self) -> bool {
        matches!(self, ReadFrom::AzAffinity | ReadFrom::AzAffinityReplicasAndPrimary)
    }
}

/// A Sentinel-managed deployment: the service (master) name, and the Sentinels' own credentials when they have
/// some (the URL's credentials are the data nodes').
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct SentinelSettings {
    pub(crate) service: String,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
}
