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
    p.upsert(check(6, "http://no-such-name.fleet.test/", 1_000, 1_000));
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
    assert_eq!(outcome(6), Some(Outcome::DnsNxdomain));
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

/// The first result of `id`, or a panic naming it.
fn get(first: &HashMap<u64, jetmon_shared::frames::ProbeResult>, id: u64) -> (Outcome, u16) {
    let r = first
        .get(&id)
        .unwrap_or_else(|| panic!("no result for check {id}"));
    (r.outcome, r.detail)
}

#[test]
fn names_resolve_through_real_dns_with_each_failure_told_apart() {
    use jetmon_prober::proto::dns::detail;
    use jetmon_shared::check::{CheckType, DnsRecordType, IpPreference};
    let fleet = Fleet::get();
    let port = fleet.port;
    let mut p = Prober::start("", 1 << 20);
    // Sites 45-49 belong to this test.
    p.upsert(check(451, &fleet.named_url(45), 1_000, 5_000));
    p.upsert(check(
        452,
        &format!("http://alias.fleet.test:{port}/"),
        1_000,
        5_000,
    ));
    p.upsert(check(
        453,
        &format!("http://nope.fleet.test:{port}/"),
        1_000,
        5_000,
    ));
    p.upsert(check(
        454,
        &format!("http://norecords.fleet.test:{port}/"),
        1_000,
        5_000,
    ));
    // AAAA only (::1): IPv4 first finds no A and falls back to AAAA, which safety refuses
    // (the allow-list has 127.0.0.0/8, not ::1); IPv4 only stops at "no records".
    p.upsert(check(
        455,
        &format!("http://v6only.fleet.test:{port}/"),
        1_000,
        5_000,
    ));
    let mut v4_only = check(
        456,
        &format!("http://v6only.fleet.test:{port}/"),
        1_000,
        5_000,
    );
    v4_only.ip_preference = IpPreference::V4Only;
    p.upsert(v4_only);
    p.upsert(check(
        457,
        &format!("http://outside.test:{port}/"),
        1_000,
        5_000,
    )); // REFUSED
    p.upsert(check(
        458,
        &format!("http://x.slow.test:{port}/"),
        1_000,
        6_000,
    )); // no answer
    // Many checks of one name: one query, all of them resolved by it.
    for k in 0..20u64 {
        p.upsert(check(
            4600 + k,
            &format!("{}?k={k}", fleet.named_url(46)),
            1_000,
            5_000,
        ));
    }
    let dns = |id: u64, name: &str, rtype: DnsRecordType, expected: &[&str]| {
        let mut c = check(id, name, 1_000, 5_000);
        c.check_type = CheckType::Dns;
        c.dns_record_type = rtype;
        c.dns_expected = expected.iter().map(|s| s.to_string()).collect();
        c
    };
    p.upsert(dns(
        471,
        "site-47.fleet.test",
        DnsRecordType::A,
        &["127.0.1.47"],
    ));
    p.upsert(dns(
        472,
        "site-47.fleet.test",
        DnsRecordType::A,
        &["192.0.2.1"],
    ));
    p.upsert(dns(
        473,
        "fleet.test",
        DnsRecordType::Mx,
        &["10 mail.fleet.test."],
    ));
    p.upsert(dns(474, "fleet.test", DnsRecordType::Txt, &["v=spf1 -all"]));
    p.upsert(dns(
        475,
        "alias.fleet.test",
        DnsRecordType::Cname,
        &["SITE-1.fleet.test"],
    ));
    p.upsert(dns(476, "big.fleet.test", DnsRecordType::Txt, &[])); // truncated: TCP
    p.upsert(dns(477, "gone.fleet.test", DnsRecordType::A, &[]));
    p.upsert(dns(
        478,
        "v6only.fleet.test",
        DnsRecordType::Aaaa,
        &["0:0::1"],
    ));

    let wanted = 8 + 20 + 8;
    // Until every check reported and check 451 reported twice (its second round is cached).
    let results = p.collect(Duration::from_secs(15), |r| {
        first_by_check(r).len() >= wanted && r.iter().filter(|x| x.check_id == 451).count() >= 2
    });
    let first = first_by_check(&results);
    assert_eq!(get(&first, 451), (Outcome::Ok, 0));
    let named = first[&451];
    assert!(named.phases.dns_us > 0, "{:?}", named.phases);
    assert!(named.phases.total_us >= named.phases.dns_us + named.phases.connect_us);
    assert_eq!(get(&first, 452), (Outcome::Ok, 0), "CNAME followed");
    assert_eq!(get(&first, 453), (Outcome::DnsNxdomain, 0));
    assert_eq!(get(&first, 454), (Outcome::DnsNoRecords, 0));
    assert_eq!(get(&first, 455).0, Outcome::ProbeSafetyBlocked);
    assert_eq!(get(&first, 456), (Outcome::DnsNoRecords, 0));
    assert_eq!(get(&first, 457), (Outcome::DnsServfail, detail::REFUSED));
    assert_eq!(get(&first, 458), (Outcome::DnsServfail, detail::TIMEOUT));
    for k in 0..20u64 {
        assert_eq!(
            get(&first, 4600 + k),
            (Outcome::Ok, 0),
            "check {}",
            4600 + k
        );
    }
    assert_eq!(get(&first, 471), (Outcome::Ok, 0));
    assert_eq!(
        get(&first, 472),
        (Outcome::KeywordMissing, detail::UNEXPECTED_VALUES)
    );
    assert_eq!(get(&first, 473), (Outcome::Ok, 0));
    assert_eq!(get(&first, 474), (Outcome::Ok, 0));
    assert_eq!(get(&first, 475), (Outcome::Ok, 0));
    assert_eq!(
        get(&first, 476),
        (Outcome::Ok, 0),
        "the TCP retry got the records"
    );
    assert_eq!(get(&first, 477), (Outcome::DnsNxdomain, 0));
    assert_eq!(get(&first, 478), (Outcome::Ok, 0));
    assert!(first[&471].phases.dns_us > 0);
    // Later rounds come from the cache: no resolution time.
    let cached = results
        .iter()
        .filter(|r| r.check_id == 451)
        .nth(1)
        .map(|r| r.phases.dns_us);
    assert_eq!(
        cached,
        Some(0),
        "the second round of check 451 comes from the cache"
    );
}

#[test]
fn dead_resolvers_are_ours_not_the_sites() {
    use jetmon_shared::check::{CheckType, DnsRecordType};
    let fleet = Fleet::get();
    // Nothing listens on port 9: every query is refused at once by the kernel.
    let mut p = Prober::start("resolvers = [\"127.0.0.1:9\"]\n", 1 << 20);
    p.upsert(check(491, &fleet.named_url(49), 1_000, 3_000));
    let mut dns = check(492, "site-49.fleet.test", 1_000, 3_000);
    dns.check_type = CheckType::Dns;
    dns.dns_record_type = DnsRecordType::A;
    p.upsert(dns);
    p.upsert(check(493, &fleet.url(49), 1_000, 3_000)); // no name, no DNS needed
    let results = p.collect(Duration::from_secs(8), |r| first_by_check(r).len() == 3);
    let first = first_by_check(&results);
    assert_eq!(get(&first, 491).0, Outcome::ResolverUnavailable);
    assert_eq!(get(&first, 492).0, Outcome::ResolverUnavailable);
    assert_eq!(get(&first, 493), (Outcome::Ok, 0));
}

/// A bounded DNS server on loopback that misbehaves on purpose, by name.
fn hostile_dns() -> (
    u16,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<()>,
) {
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::rdata::{A, CNAME};
    use hickory_proto::rr::{Name, RData, Record};
    use std::net::Ipv4Addr;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_flag = stop.clone();
    let handle = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let mut buf = [0u8; 1500];
        while started.elapsed() < Duration::from_secs(20)
            && !stop_flag.load(std::sync::atomic::Ordering::Relaxed)
        {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let Some(query) = q.queries.first().cloned() else {
                continue;
            };
            let qname = query.name().to_ascii().to_ascii_lowercase();
            let mut m = Message::new(q.metadata.id, MessageType::Response, q.metadata.op_code);
            m.metadata.recursion_desired = true;
            m.metadata.recursion_available = true;
            m.add_query(query.clone());
            let name = |s: &str| Name::from_ascii(s).unwrap();
            let a = |n: &str, ip: [u8; 4]| {
                Record::from_rdata(name(n), 60, RData::A(A(Ipv4Addr::from(ip))))
            };
            match qname.as_str() {
                "servfail.hostile.test." => m.metadata.response_code = ResponseCode::ServFail,
                "chain.hostile.test." => {
                    let mut from = "chain.hostile.test.".to_string();
                    for i in 0..9 {
                        let to = format!("c{i}.hostile.test.");
                        m.add_answer(Record::from_rdata(
                            name(&from),
                            60,
                            RData::CNAME(CNAME(name(&to))),
                        ));
                        from = to;
                    }
                    m.add_answer(a(&from, [127, 0, 1, 48]));
                }
                "many.hostile.test." => {
                    for i in 0..65u8 {
                        m.add_answer(a("many.hostile.test.", [127, 0, 1, i + 1]));
                    }
                }
                "spoof.hostile.test." => {
                    // A forged answer (wrong id) first, then the real one.
                    let mut forged = m.clone();
                    forged.metadata.id = q.metadata.id.wrapping_add(1);
                    forged.add_answer(a("spoof.hostile.test.", [127, 0, 9, 9]));
                    let _ = socket.send_to(&forged.to_vec().unwrap(), from);
                    m.add_answer(a("spoof.hostile.test.", [127, 0, 1, 48]));
                }
                "." => {} // the canary: NOERROR, no records
                _ => m.metadata.response_code = ResponseCode::NXDomain,
            }
            let _ = socket.send_to(&m.to_vec().unwrap(), from);
        }
    });
    (port, stop, handle)
}

#[test]
fn hostile_dns_answers_are_contained() {
    use jetmon_prober::proto::dns::detail;
    let fleet = Fleet::get();
    let (dns_port, stop, server) = hostile_dns();
    let mut p = Prober::start(
        &format!("resolvers = [\"127.0.0.1:{dns_port}\"]\n"),
        1 << 20,
    );
    let port = fleet.port;
    p.upsert(check(
        481,
        &format!("http://servfail.hostile.test:{port}/"),
        1_000,
        3_000,
    ));
    p.upsert(check(
        482,
        &format!("http://chain.hostile.test:{port}/"),
        1_000,
        3_000,
    ));
    p.upsert(check(
        483,
        &format!("http://many.hostile.test:{port}/"),
        1_000,
        3_000,
    ));
    p.upsert(check(
        484,
        &format!("http://spoof.hostile.test:{port}/"),
        1_000,
        3_000,
    ));
    let results = p.collect(Duration::from_secs(10), |r| first_by_check(r).len() == 4);
    drop(p);
    let first = first_by_check(&results);
    assert_eq!(get(&first, 481), (Outcome::DnsServfail, detail::SERVFAIL));
    assert_eq!(
        get(&first, 482),
        (Outcome::DnsServfail, detail::CNAME_CHAIN_TOO_LONG)
    );
    assert_eq!(
        get(&first, 483),
        (Outcome::DnsServfail, detail::TOO_MANY_ANSWERS)
    );
    assert_eq!(
        get(&first, 484),
        (Outcome::Ok, 0),
        "the forged answer was ignored"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    server.join().unwrap();
}

#[test]
fn https_certificates_and_handshakes_each_get_their_code() {
    use jetmon_prober::tls::detail;
    let fleet = Fleet::get();
    let tls = fleet.tls_port();
    let mut p = Prober::start("", 1 << 20);
    let cases = [
        (501, "valid", Outcome::Ok),
        (502, "expired", Outcome::TlsCertExpired),
        (503, "future", Outcome::TlsCertNotYetValid),
        (504, "wronghost", Outcome::TlsCertHostname),
        (505, "selfsigned", Outcome::TlsCertUntrusted),
        (506, "unknownca", Outcome::TlsCertUntrusted),
        (507, "nointermediate", Outcome::TlsCertUntrusted),
        (508, "expiring", Outcome::Ok),
        (509, "legacy", Outcome::TlsDeprecated),
        (510, "weak", Outcome::TlsHandshake),
    ];
    for (id, name, _) in cases {
        p.upsert(check(
            id,
            &format!("https://{name}.tls.fleet.test:{tls}/"),
            1_000,
            5_000,
        ));
    }
    // A fleet site over HTTPS (the wildcard certificate, SNI site-52.fleet.test).
    p.upsert(check(
        511,
        &format!("https://site-52.fleet.test:{tls}/"),
        1_000,
        5_000,
    ));
    // Plain HTTP to the TLS port: the server's answer is not HTTP we can read as a TLS client
    // would, and the reverse (TLS to a plain port) fails the handshake.
    p.upsert(check(
        512,
        &format!("https://site-52.fleet.test:{}/", fleet.port),
        1_000,
        5_000,
    ));
    let results = p.collect(Duration::from_secs(15), |r| first_by_check(r).len() == 12);
    let first = first_by_check(&results);
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    const DAY: i64 = 86_400;
    for (id, name, want) in cases {
        let r = first
            .get(&id)
            .unwrap_or_else(|| panic!("no result for {name}"));
        assert_eq!(r.outcome, want, "{name}: {r:?}");
    }
    let valid = first[&501];
    assert_eq!(valid.http_status, 200);
    assert_eq!(valid.tls_version, 0x0304, "TLS 1.3 negotiated");
    assert!(
        valid.phases.tls_us > 0 && valid.phases.ttfb_us > 0,
        "{:?}",
        valid.phases
    );
    assert!((valid.cert_not_after_s - now_s - 365 * DAY).abs() < 2 * DAY);
    assert_eq!(
        p.certs.get(&501),
        Some(&("Jetmon Fleet Intermediate".to_owned(), 2))
    );
    // The leaf's facts even when it is refused.
    let expired = first[&502];
    assert!(
        (expired.cert_not_after_s - (now_s - 30 * DAY)).abs() < 2 * DAY,
        "notAfter of the expired leaf: {}",
        expired.cert_not_after_s
    );
    assert_eq!(
        p.certs.get(&502).map(|c| c.0.as_str()),
        Some("Jetmon Fleet Intermediate")
    );
    assert_eq!(first[&506].detail, detail::CERT_UNKNOWN_ISSUER);
    let expiring = first[&508];
    let left = expiring.cert_not_after_s - now_s;
    assert!(left > 4 * DAY && left <= 5 * DAY, "expiring in {left} s");
    assert_eq!(first[&509].detail, detail::LEGACY_ONLY);
    assert_eq!(first[&510].tls_version, 0);
    assert_eq!(get(&first, 511), (Outcome::Ok, 0));
    // One of the two checks of site-52.fleet.test resolved it; the other found it cached.
    assert!(first[&511].phases.dns_us > 0 || first[&512].phases.dns_us > 0);
    assert_eq!(get(&first, 512).0, Outcome::TlsHandshake);
}

#[test]
fn redirects_follow_policy_and_every_hop_passes_safety() {
    use jetmon_prober::proto::redirect::detail;
    use jetmon_shared::check::RedirectPolicy;
    use jetmon_shared::frames::{FLAG_REDIRECT_DOWNGRADE, FLAG_REDIRECT_HOST_CHANGED};
    let fleet = Fleet::get();
    let (port, tls) = (fleet.port, fleet.tls_port());
    let site = |path: &str| format!("http://site-53.fleet.test:{port}{path}");
    let mut p = Prober::start("", 1 << 20);
    p.upsert(check(531, &site("/r/1"), 1_000, 5_000)); // 3 hops, relative Locations
    p.upsert(check(532, &site("/r/loop"), 1_000, 5_000));
    p.upsert(check(533, &site("/r/many/"), 1_000, 5_000));
    p.upsert(check(534, &site("/r/to-https"), 1_000, 5_000));
    p.upsert(check(
        535,
        &format!("https://site-53.fleet.test:{tls}/r/downgrade"),
        1_000,
        5_000,
    ));
    p.upsert(check(536, &site("/r/elsewhere"), 1_000, 5_000));
    p.upsert(check(537, &site("/r/metadata"), 1_000, 5_000)); // SSRF attempt
    p.upsert(check(538, &site("/r/ftp"), 1_000, 5_000));
    p.upsert(check(539, &site("/r/nowhere"), 1_000, 5_000));
    let mut fail = check(540, &site("/r/1"), 1_000, 5_000);
    fail.redirect_policy = RedirectPolicy::Fail;
    p.upsert(fail);
    let mut short = check(541, &site("/r/1"), 1_000, 5_000);
    short.max_redirects = 2;
    p.upsert(short);
    let mut alert = check(542, &site("/r/elsewhere"), 1_000, 5_000);
    alert.redirect_policy = RedirectPolicy::Alert;
    p.upsert(alert);
    let mut alert_down = check(
        544,
        &format!("https://site-53.fleet.test:{tls}/r/downgrade"),
        1_000,
        5_000,
    );
    alert_down.redirect_policy = RedirectPolicy::Alert;
    p.upsert(alert_down);
    let mut alert_same = check(545, &site("/r/1"), 1_000, 5_000);
    alert_same.redirect_policy = RedirectPolicy::Alert;
    p.upsert(alert_same);
    // nginx gzips /gz (chunked): the keyword is found in the decoded page.
    let mut gz = check(543, &site("/gz"), 1_000, 5_000);
    gz.keywords = vec!["powered by wordpress".into()];
    p.upsert(gz);
    let results = p.collect(Duration::from_secs(15), |r| first_by_check(r).len() == 15);
    let first = first_by_check(&results);
    assert_eq!(get(&first, 543), (Outcome::Ok, 0), "gzip from real nginx");
    let chain = first[&531];
    assert_eq!(
        (chain.outcome, chain.http_status, chain.redirect_count),
        (Outcome::Ok, 200, 3)
    );
    assert_eq!(
        chain.flags & (FLAG_REDIRECT_DOWNGRADE | FLAG_REDIRECT_HOST_CHANGED),
        0
    );
    assert_eq!(
        p.final_urls.get(&531).map(String::as_str),
        Some(format!("http://site-53.fleet.test:{port}/ok?from=3").as_str())
    );
    // Each hop's status and where it led, in order; the last is the final URL.
    let hops = &p.chains[&531];
    assert_eq!(hops.len(), 3, "{hops:?}");
    assert_eq!(
        hops.last().map(|h| h.1.as_str()),
        Some(format!("http://site-53.fleet.test:{port}/ok?from=3").as_str())
    );
    assert!(hops.iter().all(|h| (301..=308).contains(&h.0)), "{hops:?}");
    assert_eq!(
        get(&first, 532),
        (Outcome::RedirectLoopOrLimit, detail::LOOP)
    );
    assert_eq!(
        get(&first, 533),
        (Outcome::RedirectLoopOrLimit, detail::TOO_MANY_HOPS)
    );
    assert_eq!(first[&533].redirect_count, 10);
    let to_https = first[&534];
    assert_eq!(
        (to_https.outcome, to_https.redirect_count),
        (Outcome::Ok, 1)
    );
    assert_eq!(to_https.tls_version, 0x0304, "the final hop's TLS facts");
    assert!(to_https.cert_not_after_s > 0);
    let down = first[&535];
    assert_eq!(down.outcome, Outcome::Ok);
    assert_ne!(
        down.flags & FLAG_REDIRECT_DOWNGRADE,
        0,
        "https -> http seen"
    );
    let moved = first[&536];
    assert_eq!(moved.outcome, Outcome::Ok);
    assert_ne!(moved.flags & FLAG_REDIRECT_HOST_CHANGED, 0);
    let ssrf = first[&537];
    assert_eq!(ssrf.outcome, Outcome::ProbeSafetyBlocked, "{ssrf:?}");
    assert_eq!(ssrf.redirect_count, 1);
    assert_eq!(
        get(&first, 538),
        (
            Outcome::ProbeSafetyBlocked,
            jetmon_prober::proto::safety::Blocked::Scheme as u16
        ),
        "a redirect to ftp: is a target rule, not a malformed response"
    );
    assert_eq!(
        (first[&539].outcome, first[&539].http_status),
        (Outcome::Ok, 302),
        "no Location: a final response"
    );
    assert_eq!(
        (first[&540].outcome, first[&540].http_status),
        (Outcome::RedirectPolicy, 302)
    );
    assert_eq!(
        get(&first, 541),
        (Outcome::RedirectLoopOrLimit, detail::TOO_MANY_HOPS)
    );
    assert_eq!(first[&541].redirect_count, 2);
    let alerted = first[&542];
    assert_eq!((alerted.outcome, alerted.redirect_count), (Outcome::Ok, 1));
    assert_ne!(alerted.flags & FLAG_REDIRECT_HOST_CHANGED, 0);
    // Policy alert on a chain that ended elsewhere: the advisory flag; policy follow: not.
    assert_ne!(
        alerted.flags & jetmon_shared::frames::FLAG_REDIRECT_ALERT,
        0
    );
    assert_eq!(moved.flags & jetmon_shared::frames::FLAG_REDIRECT_ALERT, 0);
    assert_ne!(
        first[&544].flags & jetmon_shared::frames::FLAG_REDIRECT_ALERT,
        0,
        "https -> http under policy alert"
    );
    assert_eq!(
        first[&545].flags & jetmon_shared::frames::FLAG_REDIRECT_ALERT,
        0,
        "a chain on the same host and scheme is no advisory"
    );
}

#[test]
fn a_hostile_server_gets_a_verdict_within_the_deadline_with_bounded_memory() {
    use common::hostile::Hostile;
    use jetmon_prober::proto::http::Detail;
    use jetmon_prober::proto::redirect::detail as redirect;
    let server = Hostile::start();
    let mut p = Prober::start("", 1 << 20);
    let cases: &[(u64, &str, &[&str], Outcome, u16)] = &[
        (601, "/slowloris", &[], Outcome::TimeoutTtfb, 0),
        (602, "/slowbody", &[], Outcome::TimeoutBody, 0),
        (
            603,
            "/bomb",
            &["wordpress"],
            Outcome::KeywordMissing,
            Detail::BodyBudget as u16,
        ),
        (604, "/gzip", &["powered by wordpress"], Outcome::Ok, 0),
        (
            605,
            "/bad-gzip",
            &[],
            Outcome::HttpMalformed,
            Detail::BadEncoding as u16,
        ),
        (
            606,
            "/malformed",
            &[],
            Outcome::HttpMalformed,
            Detail::BadSyntax as u16,
        ),
        (
            607,
            "/many-headers",
            &[],
            Outcome::HttpMalformed,
            Detail::TooManyHeaders as u16,
        ),
        (
            608,
            "/huge-head",
            &[],
            Outcome::HttpMalformed,
            Detail::HeadTooLarge as u16,
        ),
        (
            609,
            "/bad-chunk",
            &[],
            Outcome::HttpMalformed,
            Detail::BadChunking as u16,
        ),
        (
            610,
            "/short",
            &[],
            Outcome::BodyTruncated,
            Detail::ShortBody as u16,
        ),
        (
            611,
            "/loop-a",
            &[],
            Outcome::RedirectLoopOrLimit,
            redirect::LOOP,
        ),
        (612, "/to-private", &[], Outcome::ProbeSafetyBlocked, 0),
        (
            613,
            "/to-metadata-name",
            &[],
            Outcome::ProbeSafetyBlocked,
            0,
        ),
        (614, "/to-userinfo", &[], Outcome::ProbeSafetyBlocked, 0),
    ];
    for (id, path, keywords, _, _) in cases {
        let mut c = check(*id, &server.url(path), 2_000, 2_000);
        c.keywords = keywords.iter().map(|k| k.to_string()).collect();
        p.upsert(c);
    }
    let results = p.collect(Duration::from_secs(12), |r| {
        first_by_check(r).len() == cases.len()
    });
    let first = first_by_check(&results);
    for (id, path, _, outcome, detail) in cases {
        let r = first
            .get(id)
            .unwrap_or_else(|| panic!("no result for {path}"));
        assert_eq!(r.outcome, *outcome, "{path}: {r:?}");
        if *outcome != Outcome::ProbeSafetyBlocked {
            assert_eq!(r.detail, *detail, "{path}: {r:?}");
        }
        assert!(
            r.phases.total_us <= 2_300_000,
            "{path} took {} µs, past its 2 s deadline",
            r.phases.total_us
        );
    }
    assert!(
        first[&603].bytes_read < 1 << 20,
        "the bomb was not read whole"
    );
    // The prober stayed small while chewing on the bomb.
    let rss_kb = p.rss_kb();
    assert!(rss_kb < 64 * 1024, "prober RSS {rss_kb} KiB");
}

/// checks.md: a redirect's Location passes every target rule before anything is resolved or
/// dialled. A canary listener on loopback (which the test prober's allow-list permits) is the
/// target of every hostile form; none of them may reach it, and the canonical form does.
#[test]
fn hostile_redirect_targets_are_refused_before_anything_is_dialled() {
    use common::hostile::Hostile;
    use jetmon_prober::proto::safety::Blocked;
    let server = Hostile::start();
    let canary = Hostile::start();
    let cp = canary.port;
    let forms: Vec<(String, Blocked)> = vec![
        (
            format!("http://2130706433:{cp}/"),
            Blocked::NonCanonicalIpv4,
        ),
        (
            format!("http://0177.0.0.1:{cp}/"),
            Blocked::NonCanonicalIpv4,
        ),
        (
            format!("http://0x7f.0.0.1:{cp}/"),
            Blocked::NonCanonicalIpv4,
        ),
        (
            format!("http://0x7f000001:{cp}/"),
            Blocked::NonCanonicalIpv4,
        ),
        (format!("http://127.1:{cp}/"), Blocked::NonCanonicalIpv4),
        (format!("//0x7f.1:{cp}/"), Blocked::NonCanonicalIpv4),
        (format!("http:\\\\0177.1:{cp}\\"), Blocked::NonCanonicalIpv4),
        (
            format!("http://127%2E0%2E0%2E1:{cp}/"),
            Blocked::NonCanonicalIpv4,
        ),
        (format!("ftp://127.0.0.1:{cp}/"), Blocked::Scheme),
        (format!("gopher://127.0.0.1:{cp}/_GET"), Blocked::Scheme),
        ("file:///etc/passwd".to_owned(), Blocked::Scheme),
        (
            format!("http://admin:secret@127.0.0.1:{cp}/"),
            Blocked::UserInfo,
        ),
        (format!("http://localhost:{cp}/"), Blocked::InternalName),
        (
            format!("http://canary.localhost:{cp}/"),
            Blocked::InternalName,
        ),
        (
            format!("http://metadata.google.internal:{cp}/"),
            Blocked::InternalName,
        ),
    ];
    let mut p = Prober::start("", 1 << 20);
    for (i, (loc, _)) in forms.iter().enumerate() {
        p.upsert(check(
            700 + i as u64,
            &server.redirect_to(loc),
            1_000,
            3_000,
        ));
    }
    let results = p.collect(Duration::from_secs(12), |r| {
        first_by_check(r).len() == forms.len()
    });
    let first = first_by_check(&results);
    for (i, (loc, why)) in forms.iter().enumerate() {
        let r = first
            .get(&(700 + i as u64))
            .unwrap_or_else(|| panic!("no result for {loc:?}"));
        assert_eq!(
            (r.outcome, r.detail),
            (Outcome::ProbeSafetyBlocked, *why as u16),
            "{loc:?}: {r:?}"
        );
        assert_eq!(r.redirect_count, 0, "{loc:?} was not followed");
        assert_eq!(r.http_status, 302, "{loc:?}");
    }
    assert_eq!(canary.accepted(), 0, "a hostile form reached the canary");
    // Each refusal says, in words, which redirect broke which rule.
    let note = &p.notes[&700];
    assert!(
        note.contains("non-canonical IPv4") && note.contains("redirect to http://2130706433"),
        "{note}"
    );
    let note = &p.notes[&(700 + forms.len() as u64 - 4)];
    assert!(
        note.contains("user:password@") && !note.contains("secret"),
        "{note}"
    );
    // The canonical form of the same address is a target like any other: followed.
    p.upsert(check(
        799,
        &server.redirect_to(&canary.url("/")),
        1_000,
        3_000,
    ));
    let results = p.collect(Duration::from_secs(8), |r| {
        r.iter().any(|x| x.check_id == 799)
    });
    let ok = results
        .iter()
        .find(|r| r.check_id == 799)
        .expect("a result for the canonical form");
    assert_eq!((ok.outcome, ok.redirect_count), (Outcome::Ok, 1), "{ok:?}");
    assert!(
        canary.accepted() >= 1,
        "the canonical form reached the canary"
    );
}

/// checks.md: a probe never goes silent. A target the prober refuses when the check is
/// configured yields its outcome at once (probe_safety_blocked, with a note a person can
/// read and no credentials in it), and again on every trigger-now and re-check; an address
/// refused when dialled says which address and how to allow it.
#[test]
fn a_target_refused_at_configuration_yields_its_outcome_at_once() {
    use jetmon_prober::proto::safety::Blocked;
    use jetmon_shared::check::{CheckSpec, CheckType};
    use jetmon_shared::frames::Command;
    let mut p = Prober::start_raw("", 1 << 20);
    p.upsert(check(
        901,
        "http://admin:hunter2@127.0.0.1:9/",
        60_000,
        2_000,
    ));
    p.upsert(check(902, "ftp://127.0.0.1/", 60_000, 2_000));
    p.upsert(CheckSpec {
        interval_ms: 60_000,
        ..CheckSpec::new(903, 1, CheckType::Tcp, "no-port-here")
    });
    // Accepted at configuration, refused when dialled: loopback is not allowed here.
    p.upsert(check(904, "http://127.0.0.1:9/", 60_000, 2_000));
    p.send(&Command::TriggerNow {
        check_id: 904,
        request_id: 76,
    });
    let results = p.collect(Duration::from_secs(5), |r| first_by_check(r).len() == 4);
    let first = first_by_check(&results);
    let expect = [
        (901, Blocked::UserInfo),
        (902, Blocked::Scheme),
        (903, Blocked::Syntax),
        (904, Blocked::Loopback),
    ];
    for (id, why) in expect {
        let r = first
            .get(&id)
            .unwrap_or_else(|| panic!("no result for {id}"));
        assert_eq!(
            (r.outcome, r.detail),
            (Outcome::ProbeSafetyBlocked, why as u16),
            "{id}: {r:?}"
        );
    }
    let note = &p.notes[&901];
    assert!(note.contains("user:password@"), "{note}");
    assert!(
        !note.contains("hunter2"),
        "the note carries the password: {note}"
    );
    assert!(!p.log().contains("hunter2"), "the log carries the password");
    assert!(
        p.notes[&902].contains("only http and https"),
        "{}",
        p.notes[&902]
    );
    assert_eq!(
        p.notes[&904],
        "loopback address 127.0.0.1 is refused (127.0.0.0/8, ::1; http://127.0.0.1:9/); allow \
         it with prober.allow_cidrs / --allow-cidr"
    );
    // A trigger-now of a refused check answers at once, with its request id.
    p.send(&Command::TriggerNow {
        check_id: 901,
        request_id: 77,
    });
    let again = p.collect(Duration::from_secs(3), |r| {
        r.iter().any(|x| x.request_id == 77)
    });
    let r = again
        .iter()
        .find(|x| x.request_id == 77)
        .expect("a trigger-now of a refused check is answered");
    assert_eq!(r.outcome, Outcome::ProbeSafetyBlocked);
    // Fixing the target makes it a check like any other.
    p.upsert(check(902, "http://127.0.0.1:9/", 60_000, 2_000));
    p.send(&Command::TriggerNow {
        check_id: 902,
        request_id: 78,
    });
    let fixed = p.collect(Duration::from_secs(3), |r| {
        r.iter().any(|x| x.request_id == 78)
    });
    let r = fixed.iter().find(|x| x.request_id == 78).expect("result");
    assert_eq!(
        (r.outcome, r.detail),
        (Outcome::ProbeSafetyBlocked, Blocked::Loopback as u16)
    );
}
