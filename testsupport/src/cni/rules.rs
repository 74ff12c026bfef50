//! The in-pod redirection istio-cni installs inside each enrolled pod's network namespace,
//! IPv4, pod-level DNS capture off. Checked line by line against istio/istio at 86c9f01:
//! `cni/pkg/iptables/testdata/dns_pod_disabled_and_on_globally.golden` (the builder's
//! output, `cni/pkg/iptables/iptables.go` `AppendInpodRules`), the marks and table in
//! `cni/pkg/config/config.go` (`InpodTProxyMark 0x111/0xfff`, `InpodMark 1337 = 0x539/0xfff`,
//! `RouteTableInbound 100`), the rule and route in `cni/pkg/iptables/iptables_linux.go`
//! (`fwmark 0x111/0xfff pref 32764 lookup 100`; `local 0.0.0.0/0 dev lo table 100`), and
//! istio/ztunnel's `scripts/ztunnel-redirect-inpod.sh`, which installs the same set.
//!
//! | rule | why |
//! |---|---|
//! | mangle PRERT: mark 0x539 → connmark 0x111 | a connection the proxy opened inside the pod (marked 1337) gets a conntrack mark |
//! | mangle OUTPUT: connmark 0x111 → restore mark | the app's replies to such a connection carry 0x111 … |
//! | ip rule 32764 fwmark 0x111 lookup 100; table 100 local default | … and are delivered locally, to the proxy's transparent socket (spoofed source) |
//! | nat PRERT: not 15008, not marked → REDIRECT 15006 | inbound plaintext to the pod goes to the proxy's 15006 |
//! | nat OUTPUT: not marked, not loopback → REDIRECT 15001 | the pod's outbound TCP goes to the proxy's 15001 |
//! | 169.254.7.127 ACCEPT | kubelet probes, SNATed to that address by the node, stay uncaptured |

/// The proxy's mark on every socket it opens in a pod (`PACKET_MARK`, ztunnel's default).
pub const INPOD_MARK: u32 = 0x539;
/// The conntrack/packet mark of the proxy's connections' return packets.
pub const INPOD_TPROXY_MARK: u32 = 0x111;

/// `iptables-restore --noflush` input.
pub const IPTABLES: &str = "\
*mangle
:ISTIO_PRERT - [0:0]
:ISTIO_OUTPUT - [0:0]
-A PREROUTING -j ISTIO_PRERT
-A OUTPUT -j ISTIO_OUTPUT
-A ISTIO_PRERT -m mark --mark 0x539/0xfff -j CONNMARK --set-xmark 0x111/0xfff
-A ISTIO_OUTPUT -m connmark --mark 0x111/0xfff -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff
COMMIT
*nat
:ISTIO_PRERT - [0:0]
:ISTIO_OUTPUT - [0:0]
-A OUTPUT -j ISTIO_OUTPUT
-A PREROUTING -j ISTIO_PRERT
-A ISTIO_PRERT -s 169.254.7.127/32 -p tcp -m tcp -j ACCEPT
-A ISTIO_OUTPUT -d 169.254.7.127/32 -p tcp -m tcp -j ACCEPT
-A ISTIO_PRERT ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15006
-A ISTIO_OUTPUT -p tcp -m mark --mark 0x111/0xfff -j ACCEPT
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -j ACCEPT
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15001
COMMIT
";

/// `ip` commands after the iptables rules (run inside the pod's namespace).
pub const IP: &[&[&str]] = &[
    &[
        "ip",
        "rule",
        "add",
        "fwmark",
        "0x111/0xfff",
        "pref",
        "32764",
        "lookup",
        "100",
    ],
    &[
        "ip",
        "route",
        "add",
        "local",
        "0.0.0.0/0",
        "dev",
        "lo",
        "table",
        "100",
    ],
];

#[cfg(test)]
mod tests {
    /// The rules, in iptables-save's order, are the golden file's lines (the golden names
    /// the probe address without /32, as `iptables-save` prints a host address).
    #[test]
    fn rules_are_the_golden_files() {
        let mut golden = vec![
            "-A PREROUTING -j ISTIO_PRERT",
            "-A OUTPUT -j ISTIO_OUTPUT",
            "-A OUTPUT -j ISTIO_OUTPUT",
            "-A PREROUTING -j ISTIO_PRERT",
            "-A ISTIO_PRERT -m mark --mark 0x539/0xfff -j CONNMARK --set-xmark 0x111/0xfff",
            "-A ISTIO_OUTPUT -m connmark --mark 0x111/0xfff -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff",
            "-A ISTIO_PRERT -s 169.254.7.127 -p tcp -m tcp -j ACCEPT",
            "-A ISTIO_OUTPUT -d 169.254.7.127 -p tcp -m tcp -j ACCEPT",
            "-A ISTIO_PRERT ! -d 127.0.0.1/32 -p tcp ! --dport 15008 -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15006",
            "-A ISTIO_OUTPUT -p tcp -m mark --mark 0x111/0xfff -j ACCEPT",
            "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -j ACCEPT",
            "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark 0x539/0xfff -j REDIRECT --to-ports 15001",
        ];
        let mut ours: Vec<String> = super::IPTABLES
            .lines()
            .filter(|l| l.starts_with("-A"))
            .map(|l| l.replace("169.254.7.127/32", "169.254.7.127"))
            .collect();
        golden.sort();
        ours.sort();
        assert_eq!(ours, golden);
    }
}
