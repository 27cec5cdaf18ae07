//! Starting shard executors: the memlock check and its one-line explanation, and the glommio
//! executor that runs one shard. Shared by `jetmon-prober` and the veriflier's embedded shard.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use anyhow::{Result, bail};
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement as GlommioPlacement};
use jetmon_shared::config::{Placement, ProberConfig};
use jetmon_shared::ring::{Consumer, Producer};

use crate::shard::{Shard, ShardConfig};
use crate::target::HostsFile;

/// Starts shard `id` on its own executor thread (placement from the configuration), fed by
/// `commands` and writing into `results`; runs until drained or shut down. With
/// `private_rings` the rings' files may be unlinked once mapped (see
/// `ShardConfig::stop_when_ring_deleted`).
#[allow(clippy::too_many_arguments)]
pub fn spawn_shard(
    id: u16,
    config: &ProberConfig,
    cores: usize,
    extra_allow: &crate::proto::safety::ExtraAllow,
    tls: Arc<rustls::ClientConfig>,
    hosts: Arc<HostsFile>,
    commands: Consumer,
    results: Producer,
    private_rings: bool,
) -> Result<ExecutorJoinHandle<()>> {
    let placement = match config.placement {
        Placement::Unbound => GlommioPlacement::Unbound,
        Placement::Pinned => {
            let cpu = config
                .cpus
                .get(usize::from(id))
                .copied()
                .unwrap_or((usize::from(id) + 1) % cores.max(1));
            GlommioPlacement::Fixed(cpu)
        }
    };
    let (shard_config, extra_allow) = (config.clone(), extra_allow.clone());
    LocalExecutorBuilder::new(placement)
        .name(&format!("jetmon-shard-{id}"))
        .io_memory(config.io_memory_bytes)
        .spawn(move || async move {
            let mut cfg = ShardConfig::from_prober(id, &shard_config, &extra_allow, tls);
            cfg.stop_when_ring_deleted = !private_rings;
            let shard = Rc::new(RefCell::new(Shard::new(cfg, commands, results, hosts)));
            Shard::run(shard).await;
        })
        .map_err(|e| {
            anyhow::anyhow!(explain_executor_error(
                &e.to_string(),
                config.io_memory_bytes
            ))
        })
}

/// Refuses to start when the shards' io_uring memory cannot fit the memlock limit, with the
/// one line an operator needs.
pub fn check_memlock(io_memory: usize, shards: u16) -> Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return Ok(());
    }
    // glommio registers io_memory with each of an executor's three io_urings, and the kernel
    // pins it once per ring; add a little for the rings themselves. When registration does
    // not fit, glommio silently falls back to unregistered buffers, so refuse instead.
    let needed = (3 * io_memory as u64 + (256 << 10)) * u64::from(shards);
    if needed > limit.rlim_cur {
        bail!(memlock_line(needed, limit.rlim_cur));
    }
    Ok(())
}

fn memlock_line(needed: u64, limit: u64) -> String {
    format!(
        "io_uring needs about {} KiB of locked memory for the shards but the memlock limit is {} KiB; \
         raise it (`ulimit -l`, or `LimitMEMLOCK=` in the systemd unit), or lower prober.io_memory_bytes \
         or prober.shards",
        needed / 1024,
        limit / 1024
    )
}

/// Turns glommio's executor-creation errors into one line; memlock failures say how to fix them.
pub fn explain_executor_error(error: &str, io_memory: usize) -> String {
    let lower = error.to_ascii_lowercase();
    if lower.contains("cannot allocate memory")
        || lower.contains("memlock")
        || lower.contains("enomem")
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own.
        unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
        return memlock_line(io_memory as u64, limit.rlim_cur);
    }
    format!(
        "cannot start a shard executor: {}",
        error.split_whitespace().collect::<Vec<_>>().join(" ")
    )
}
