//! `Desired` in the articles' notation: iptables-save, `ip rule`, `ip route show table N`.

use std::fmt::Write as _;

use super::Desired;
use crate::model::{IptRule, Table};

impl Desired {
    /// The iptables-save lines of `table`, in order.
    pub fn iptables_lines(&self, table: Table) -> Vec<String> {
        self.iptables
            .iter()
            .filter(|r| r.table == table)
            .map(IptRule::line)
            .collect()
    }

    /// The `ip route show table N` lines of table `t`.
    pub fn route_lines(&self, t: u32) -> Vec<String> {
        self.routes
            .iter()
            .filter(|r| r.table == t)
            .map(ToString::to_string)
            .collect()
    }

    /// Everything in the articles' notation, for an operator to diff against them.
    pub fn show(&self) -> String {
        let mut s = String::new();
        if let Some((name, members)) = &self.ipset {
            let _ = writeln!(
                s,
                "# ipset\ncreate {name} hash:ip family inet hashsize 1024 maxelem 65536"
            );
            for m in members {
                let _ = writeln!(s, "add {name} {m}");
            }
        }
        let _ = writeln!(s, "# links ({})", self.kind.name());
        for t in &self.tunnels {
            let _ = writeln!(
                s,
                "{}\nip addr add {}/{} dev {}",
                t.render(self.kind),
                t.addr,
                t.prefix,
                t.name
            );
        }
        for table in [Table::Mangle, Table::Nat] {
            self.show_table(&mut s, table);
        }
        let _ = writeln!(s, "# ip rule");
        for r in &self.rules {
            let _ = writeln!(s, "{r}");
        }
        for t in &self.tables {
            let _ = writeln!(s, "# ip route show table {t}");
            for l in self.route_lines(*t) {
                let _ = writeln!(s, "{l}");
            }
        }
        let _ = writeln!(s, "# sysctl");
        for c in &self.sysctls {
            let _ = writeln!(s, "{} = {}", c.key, c.value);
        }
        s
    }

    fn show_table(&self, s: &mut String, table: Table) {
        let lines = self.iptables_lines(table);
        if lines.is_empty() {
            return;
        }
        let _ = writeln!(s, "# iptables-save -t {}\n*{}", table.name(), table.name());
        for (_, c) in self.chains.iter().filter(|(t, _)| *t == table) {
            let _ = writeln!(s, ":{c} - [0:0]");
        }
        for l in lines {
            let _ = writeln!(s, "{l}");
        }
        let _ = writeln!(s, "COMMIT");
    }
}
