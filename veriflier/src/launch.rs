//! Starting a `jetmon-veriflier` process and waiting until it listens — for tests, benchmarks
//! and scripts that run verifliers next to control. The child is killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

/// A running veriflier: its gRPC address and, when enabled, its metrics address.
pub struct Launched {
    pub child: Child,
    pub addr: String,
    pub metrics: Option<String>,
}

impl Drop for Launched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` (a `jetmon-veriflier` invocation; its stderr is taken over and echoed) and
/// waits up to `wait` for "listening on ADDR". With `metrics`, also waits for its metrics
/// address.
pub fn launch(cmd: &mut Command, metrics: bool, wait: Duration) -> Result<Launched> {
    let mut child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .context("starting jetmon-veriflier")?;
    let stderr = child.stderr.take().context("the veriflier's stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[{line}]");
            if let Some(a) = line.split("metrics on http://").nth(1) {
                let _ = tx.send((true, a.trim_end_matches("/metrics").to_owned()));
            }
            if let Some(a) = line.split("listening on ").nth(1) {
                let _ = tx.send((false, a.to_owned()));
            }
        }
    });
    let mut launched = Launched {
        child,
        addr: String::new(),
        metrics: None,
    };
    while launched.addr.is_empty() || (metrics && launched.metrics.is_none()) {
        let (is_metrics, a) = rx
            .recv_timeout(wait)
            .context("the veriflier did not start listening")?;
        if is_metrics {
            launched.metrics = Some(a);
        } else {
            launched.addr = a;
        }
    }
    Ok(launched)
}
