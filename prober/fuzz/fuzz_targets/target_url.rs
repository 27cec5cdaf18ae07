//! Target parsing and probe safety on arbitrary strings: never a panic, and every accepted
//! target is internally consistent (its parts are slices of the input, its port is real, and
//! an address the safety filter passes is public).
#![no_main]

use jetmon_prober::proto::redirect::next_hop;
use jetmon_prober::proto::safety::{ProbeSafety, classify};
use jetmon_prober::target::{HostsFile, Resolution, Target, resolve_local};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    // A Location from a hostile server: whatever it resolves to must be a target we accept.
    for base in ["http://example.test/a/b?c", "https://[2001:db8::1]:8443/"] {
        if let Ok(hop) = next_hop(base, input.as_bytes()) {
            let t = Target::parse_url(&hop.url).expect("next_hop returns parseable targets");
            assert!(hop.url.len() <= jetmon_shared::check::MAX_URL_BYTES);
            assert!(!hop.url.contains('#'), "{}", hop.url);
            let _ = ProbeSafety::default().check_host(t.host);
        }
    }
    let safety = ProbeSafety::default();
    let hosts = HostsFile::parse("127.0.0.1 localhost\n10.0.0.5 intranet.example\n");
    for parsed in [Target::parse_url(input), Target::parse_host_port(input)] {
        let Ok(t) = parsed else { continue };
        assert!(t.port > 0);
        assert!(!t.host.is_empty());
        assert!(input.contains(t.authority));
        assert!(input.contains(t.path));
        assert!(t.path.is_empty() || t.path.starts_with('/') || t.path.starts_with('?'));
        let host_ok = safety.check_host(t.host).is_ok();
        if let Resolution::Literal(a) | Resolution::Hosts(a) = resolve_local(&t, &hosts) {
            if host_ok && safety.check_addr(a.ip()).is_ok() {
                assert!(classify(a.ip()).is_none(), "{a} passed safety but is not public");
            }
        }
    }
});
