//! A 3-primary Cluster: a 1000-key batched get against redis-rs's cluster loop and sync cluster pipeline.

use crate::prelude::*;

impl Runner {
    pub fn cluster(&mut self, name: &'static str, kind: Kind) {
        for primaries in [1, 2, 3] {
            let cluster = Cluster::start(kind, primaries, 0);
            let url = cluster.url();
            let client = ours(&url);
            let n = 1000;
            let ks = keys("cl", n);
            store(&client, &ks, &values(n, 4 * KIB));
            let nodes: Vec<String> = cluster.nodes.iter().map(|s| s.url()).collect();
            let cluster_client = redis::cluster::ClusterClientBuilder::new(nodes)
                .tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true))
                .build()
                .unwrap();
            let (mut cc, mut cp) = (
                cluster_client.get_connection().unwrap(),
                cluster_client.get_connection().unwrap(),
            );
            let t = alternate(
                self.rounds,
                &mut [
                    &mut || {
                        for k in &ks {
                            let v: Vec<u8> = redis::cmd("GET").arg(k).query(&mut cc).unwrap();
                            assert_eq!(v.len(), 4 * KIB);
                        }
                    },
                    &mut || {
                        let mut p = redis::cluster::cluster_pipe();
                        for k in &ks {
                            p.cmd("GET").arg(k);
                        }
                        let v: Vec<Vec<u8>> = p.query(&mut cp).unwrap();
                        assert!(v.iter().all(|v| v.len() == 4 * KIB));
                    },
                    &mut || check_all_hit(&client.batched_get(&ks).unwrap(), 4 * KIB),
                ],
            );
            let kps = |s: f64| n as f64 / s / 1000.0;
            if primaries == 3 {
                let w = "cluster(3) batched_get 1000 x 4 KiB".to_string();
                self.record(
                    Row::new(name, w.clone(), "cluster per-key GET loop (redis-rs)", "kkey/s")
                        .values(kps(t[0]), kps(t[2]))
                        .target(10.0)
                        .latency(format!("call {:.2} ms", t[2] * 1e3)),
                );
                self.record(
                    Row::new(name, w, "sync cluster pipeline of GETs (redis-rs)", "kkey/s")
                        .values(kps(t[1]), kps(t[2]))
                        .target(1.0),
                );
            }
            println!(
                "{name:<7} growth cluster {primaries} primaries, 1000 x 4 KiB: loop {:>6.0}  pipeline {:>6.0}  ours {:>6.0} kkey/s",
                kps(t[0]),
                kps(t[1]),
                kps(t[2])
            );
        }
    }
}
