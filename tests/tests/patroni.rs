//! rwproxy against a real Patroni cluster (etcd + three Patroni-managed PostgreSQL nodes, an
//! app and an rwproxy per node): failover under load, switchover, a partitioned leader.

use std::time::Duration;

use rwproxy_tests::patroni::PatroniCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn patroni_cluster_starts() {
    let Some(cluster) = PatroniCluster::start(true).await else {
        return;
    };
    let leader = cluster.wait_leader_of(None).await;
    assert_eq!(leader, 0);
    let _ = Duration::ZERO;
}
