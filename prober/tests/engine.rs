//! The probe engine end to end: a real `jetmon-prober` process, real rings, real nginx (the
//! local fleet). Each test uses its own fleet sites, so they can run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Fleet, Prober, check};
use jetmon_shared::check::{HttpMethod, ProbeOrigin};
use jetmon_shared::frames::{Command, FLAG_LATE};
use jetmon_shared::outcome::Outcome;

/// The first result of each check id.
fn first_by_check(
    results: &[jetmon_shared::frames::ProbeResult],
) -> HashMap<u64, jetmon_shared::frames::ProbeResult> {
    let mut m = HashMap::new();
    for r in results {
        m.entry(r.check_id).or_insert(*r);
    }
    m
}

#[test]
fn every_outcome_the_engine_sees_from_real_nginx() {
    let fleet = Fleet::get();
    // Sites 1-6 belong to this test.
    fleet.set(2, "500");
    fleet.set(3, "slow");
    fleet.set(4, "hang");
    let mut p = Prober::start("", 1 << 20);
    p.upsert(check(1, &fleet.url(1), 1_000, 5_000));
    p.upsert(check(2, &fleet.url(2), 1_000, 5_000));
    p.upsert(check(3, &fleet.url(3), 1_000, 1_000)); // 2 s slow > 1 s timeout
    p.upsert(check(4, &fleet.url(4), 1_000, 1_000));
    p.upsert(check(5, "http://127.0.9.1:18080/", 1_000, 1_000)); // nobody listens there
    p.upsert(check(6, "http://no-such-name.fleet.invalid/", 1_000, 1_000));
    let mut kw = check(7, &fleet.url(5), 1_000, 5_000);
    kw.keywords = vec!["IS UP".into()];
    p.upsert(kw);
    let mut missing = check(8, &fleet.url(5), 1_000, 5_000);
    missing.keywords = vec!["wordpress".into()];
    p.upsert(missing);
    let mut forbidden = check(9, &fleet.url(5), 1_000, 5_000);
    forbidden.forbidden_keywords = vec!["is up".into()];
    p.upsert(forbidden);
    let mut accepted = check(10, &fleet.url(2), 1_000, 5_000);
    accepted.accepted_statuses = vec![(200, 299), (500, 500)];
    p.upsert(accepted);
    let mut head = check(11, &fleet.url(6), 1_000, 5_000);
    head.method = HttpMethod::Head;
    p.upsert(head);

    let results = p.collect(Duration::from_secs(20), |r| first_by_check(r).len() == 11);
    fleet.set(2, "up");
    fleet.set(3, "up");
    fleet.set(4, "up");
    let first = first_by_check(&results);
    let outcome = |id: u64| first.get(&id).map(|r| r.outcome);
    assert_eq!(outcome(1), Some(Outcome::Ok));
    assert_eq!(outcome(2), Some(Outcome::HttpStatus));
    assert_eq!(outcome(3), Some(Outcome::TimeoutTtfb));
    assert_eq!(outcome(4), Some(Outcome::TimeoutTtfb));
    assert_eq!(outcome(5), Some(Outcome::ConnRefused));
    assert_eq!(
        outcome(6),
        Some(Outcome::ResolverUnavailable),
        "no DNS yet: monitor-side, not the site's fault"
    );
    assert_eq!(
        outcome(7),
        Some(Outcome::Ok),
        "keywords are case-insensitive by default"
    );
    assert_eq!(outcome(8), Some(Outcome::KeywordMissing));
    assert_eq!(outcome(9), Some(Outcome::KeywordForbiddenPresent));
    assert_eq!(outcome(10), Some(Outcome::Ok));
    assert_eq!(outcome(11), Some(Outcome::Ok));

    let ok = first[&1];
    assert_eq!(ok.http_status, 200);
    assert_eq!((ok.check_id, ok.site_id, ok.generation), (1, 10, 1));
    assert!(
        ok.phases.connect_us > 0 && ok.phases.ttfb_us > 0,
        "{:?}",
        ok.phases
    );
    assert!(
        ok.phases.total_us >= ok.phases.connect_us + ok.phases.ttfb_us,
        "{:?}",
        ok.phases
    );
    assert!(
        ok.bytes_read > 100,
        "read the whole response: {}",
        ok.bytes_read
    );
    assert!(ok.started_at_us >= ok.scheduled_at_us);
    assert_eq!(
        ok.scheduled_at_us % 1_000_000 / 1000,
        u64::from(jetmon_shared::check::phase_ms(1, 1_000)),
        "fires on its phase"
    );
    assert_eq!(first[&2].http_status, 500);
    assert_eq!(
        first[&4].phases.ttfb_us, 0,
        "nothing arrived from the hanging site"
    );
    assert!(
        first[&4].phases.total_us >= 900_000,
        "held until the 1 s deadline: {:?}",
        first[&4].phases
    );
    assert_eq!(first[&5].detail, libc::ECONNREFUSED as u16);
    // (`collect` checked that every result's seq is its index in the ring.)
    assert!(results.windows(2).all(|w| w[1].seq > w[0].seq));
}

#[test]
fn trigger_now_recheck_remove_and_pause() {
    let fleet = Fleet::get();
    let mut p = Prober::start("", 1 << 20);
    // A long interval: anything that arrives soon was triggered.
    p.upsert(check(21, &fleet.url(21), 3_600_000, 5_000));
    p.upsert(check(22, &fleet.url(22), 1_000, 5_000));
    p.send(&Command::TriggerNow {
        check_id: 21,
        request_id: 777,
    });
    p.send(&Command::Recheck {
        check_id: 21,
        request_id: 778,
        count: 2,
        spacing_ms: 300,
    });
    let results = p.collect(Duration::from_secs(10), |r| {
        r.iter().filter(|x| x.check_id == 21).count() >= 3
    });
    let mine: Vec<_> = results.iter().filter(|r| r.check_id == 21).collect();
    assert_eq!(mine.len(), 3, "{mine:?}");
    assert_eq!(
        (mine[0].origin, mine[0].request_id),
        (ProbeOrigin::TriggerNow, 777)
    );
    assert!(
        mine[1..]
            .iter()
            .all(|r| r.origin == ProbeOrigin::Recheck && r.request_id == 778)
    );
    assert!(mine.iter().all(|r| r.outcome == Outcome::Ok));

    // Pause 22, then remove it: no result may arrive for it afterwards.
    p.send(&Command::Pause {
        check_id: 22,
        paused: true,
    });
    let _ = p.collect(Duration::from_millis(300), |_| false); // anything in flight
    let after_pause = p.collect(Duration::from_millis(2_500), |_| false);
    assert!(
        after_pause.iter().all(|r| r.check_id != 22),
        "paused check probed"
    );
    p.send(&Command::Pause {
        check_id: 22,
        paused: false,
    });
    let resumed = p.collect(Duration::from_secs(5), |r| {
        r.iter().any(|x| x.check_id == 22)
    });
    assert!(
        resumed.iter().any(|r| r.check_id == 22),
        "resumed check not probed"
    );
    p.send(&Command::Remove { check_id: 22 });
    let _ = p.collect(Duration::from_millis(300), |_| false);
    let after_remove = p.collect(Duration::from_millis(2_500), |_| false);
    assert!(
        after_remove.iter().all(|r| r.check_id != 22),
        "removed check probed"
    );

    p.send(&Command::Drain { deadline_ms: 2_000 });
    let status = p
        .wait_exit(Duration::from_secs(10))
        .expect("drained and exited");
    assert!(status.success());
}

#[test]
fn hanging_sites_hold_only_their_own_probes() {
    let fleet = Fleet::get();
    // Sites 31-34 hang; 35-44 are up. All at a 1 s interval; the hanging ones time out at 3 s.
    for n in 31..=34 {
        fleet.set(n, "hang");
    }
    let mut p = Prober::start("", 1 << 20);
    for n in 31..=44u32 {
        p.upsert(check(u64::from(n), &fleet.url(n), 1_000, 3_000));
    }
    let results = p.collect(Duration::from_secs(8), |_| false);
    for n in 31..=34 {
        fleet.set(n, "up");
    }
    let up: Vec<_> = results.iter().filter(|r| r.check_id >= 35).collect();
    let hung: Vec<_> = results.iter().filter(|r| r.check_id <= 34).collect();
    assert!(
        hung.iter().all(|r| r.outcome == Outcome::TimeoutTtfb),
        "{hung:?}"
    );
    assert!(up.iter().all(|r| r.outcome == Outcome::Ok));
    // Ten up checks at 1/s for ~8 s: about 70-80 results, none held behind a 3 s hang and none
    // flagged late (that would be a start delayed past the lateness threshold).
    assert!(up.len() >= 60, "only {} results from up sites", up.len());
    let worst = up
        .iter()
        .map(|r| r.started_at_us - r.scheduled_at_us)
        .max()
        .unwrap_or(0);
    assert!(
        worst < 1_000_000,
        "an up check started {worst} µs late: blocked behind a hanging one"
    );
    assert!(up.iter().all(|r| r.flags & FLAG_LATE == 0));
    // A hanging check is not started again while its previous probe still runs.
    let stats = p.stats.last().expect("stats frames arrive every second");
    assert!(stats.overlapping > 0, "{stats:?}");
}

#[test]
fn per_target_ip_limit_holds() {
    let fleet = Fleet::get();
    fleet.set(51, "slow");
    let mut p = Prober::start("", 1 << 20);
    // 20 checks on one (slow) address with the default limit of 8 in flight per IP.
    for id in 1..=20u64 {
        let mut c = check(500 + id, &format!("{}?c={id}", fleet.url(51)), 1_000, 5_000);
        c.phase_ms = Some(0); // all due at the same instant
        p.upsert(c);
    }
    let _ = p.collect(Duration::from_millis(4_500), |_| false);
    fleet.set(51, "up");
    let max_in_flight = p.stats.iter().map(|s| s.in_flight).max().unwrap_or(0);
    assert!(
        max_in_flight <= 8,
        "{max_in_flight} probes in flight to one IP"
    );
    assert!(
        max_in_flight >= 4,
        "the limit was never reached: {max_in_flight}"
    );
    assert!(p.stats.iter().any(|s| s.deferred_ip_cap > 0));
}

#[test]
fn a_full_result_ring_stalls_probing_and_loses_nothing() {
    let fleet = Fleet::get();
    // A 4 KiB ring holds ~25 results: don't read it for a while and let it fill.
    let mut p = Prober::start("", 4096);
    for n in 61..=64u32 {
        for k in 0..5u64 {
            p.upsert(check(
                u64::from(n) * 100 + k,
                &format!("{}?k={k}", fleet.url(n)),
                1_000,
                2_000,
            ));
        }
    }
    std::thread::sleep(Duration::from_secs(4));
    let stalls = p.results.ring().stats().producer_stalls;
    assert!(stalls >= 1, "the prober never found the ring full");
    let results = p.collect(Duration::from_secs(4), |_| false);
    assert!(results.len() > 40, "{} results", results.len());
    // `collect` asserted seq == ring index for every result: none lost or repeated.
    assert!(results.windows(2).all(|w| w[1].seq > w[0].seq));
    let s = p.stats.last().expect("stats");
    assert!(s.ring_stalls >= 1, "{s:?}");
}

#[test]
fn probe_safety_refuses_private_targets_by_default() {
    use jetmon_prober::proto::safety::Blocked;
    let fleet = Fleet::get();
    let mut p = Prober::start_raw("", 1 << 20);
    p.upsert(check(71, &fleet.url(7), 1_000, 2_000)); // 127.0.1.7: loopback
    p.upsert(check(72, "http://localhost:18080/", 1_000, 2_000));
    p.upsert(check(73, "http://0177.0.1.7:18080/", 1_000, 2_000)); // octal spelling of it
    p.upsert(check(74, "http://[::1]:18080/", 1_000, 2_000));
    let results = p.collect(Duration::from_secs(6), |r| first_by_check(r).len() == 4);
    let first = first_by_check(&results);
    for (id, why) in [
        (71, Blocked::Loopback),
        (72, Blocked::InternalName),
        (73, Blocked::NonCanonicalIpv4),
        (74, Blocked::Loopback),
    ] {
        let r = first
            .get(&id)
            .unwrap_or_else(|| panic!("no result for {id}"));
        assert_eq!(
            (r.outcome, r.detail),
            (Outcome::ProbeSafetyBlocked, why as u16),
            "check {id}"
        );
        assert_eq!(r.phases.connect_us, 0, "never dialled");
    }
}

#[test]
fn tcp_checks_connect_and_match_banners() {
    use jetmon_shared::check::CheckType;
    let fleet = Fleet::get();
    // A banner-speaking peer (what an SMTP server says first), bounded: it serves a few
    // connections and stops with the test.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let banner_port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::Write;
        for mut stream in listener.incoming().take(16).flatten() {
            std::thread::spawn(move || {
                let _ = stream.write_all(b"220 jetmon-test ESMTP ready\r\n");
                std::thread::sleep(Duration::from_millis(1500)); // keep it open, say no more
            });
        }
    });
    let mut p = Prober::start("", 1 << 20);
    let tcp = |id: u64, target: String, banner: Option<&str>| {
        let mut c = check(id, &target, 1_000, 1_000);
        c.check_type = CheckType::Tcp;
        c.tcp_banner = banner.map(str::to_owned);
        c
    };
    p.upsert(tcp(81, format!("127.0.1.8:{}", fleet.port), None));
    p.upsert(tcp(82, "127.0.9.1:18080".into(), None));
    p.upsert(tcp(83, format!("127.0.0.1:{banner_port}"), Some("ESMTP")));
    p.upsert(tcp(84, format!("127.0.0.1:{banner_port}"), Some("SSH-2.0")));
    p.upsert(tcp(85, format!("127.0.1.8:{}", fleet.port), Some("220"))); // nginx waits for us
    let results = p.collect(Duration::from_secs(8), |r| first_by_check(r).len() == 5);
    let first = first_by_check(&results);
    let outcome = |id: u64| first.get(&id).map(|r| r.outcome);
    assert_eq!(outcome(81), Some(Outcome::Ok));
    assert!(first[&81].phases.connect_us > 0);
    assert_eq!(outcome(82), Some(Outcome::ConnRefused));
    assert_eq!(outcome(83), Some(Outcome::Ok));
    assert!(first[&83].phases.ttfb_us > 0 && first[&83].bytes_read > 0);
    assert_eq!(outcome(84), Some(Outcome::KeywordMissing), "another banner");
    assert_eq!(outcome(85), Some(Outcome::TimeoutTtfb), "no banner at all");
}
