//! Appends a RESULT line to perf/RESULTS.md with what is needed to rerun and compare it:
//! date, commit, machine and the exact command.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

pub fn append(path: &Path, scenario: &str, result_line: &str) -> Result<()> {
    let command = std::env::var("JETMON_BENCH_COMMAND")
        .unwrap_or_else(|_| std::env::args().collect::<Vec<_>>().join(" "));
    let entry = format!(
        "\n### {scenario} — {date}\n\n- commit: `{commit}`\n- machine: {machine}\n- command: `{command}`\n\n```\n{result_line}\n```\n",
        date = run(&["date", "-u", "+%Y-%m-%d %H:%M UTC"]),
        commit = commit(),
        machine = machine(),
    );
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(entry.as_bytes())?;
    eprintln!("recorded in {}", path.display());
    Ok(())
}

fn run(argv: &[&str]) -> String {
    std::process::Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".to_owned())
}

fn commit() -> String {
    let rev = run(&["git", "rev-parse", "--short", "HEAD"]);
    let dirty = !run(&["git", "status", "--porcelain", "--untracked-files=no"]).is_empty();
    if dirty {
        format!("{rev} (with uncommitted changes)")
    } else {
        rev
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    format!(
        "{} cores, {cpu}, kernel {}",
        run(&["nproc"]),
        run(&["uname", "-r"])
    )
}
