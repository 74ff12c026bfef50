//! The netfilter side of one hop: a walk through the chains of a hook (mangle, then nat for
//! a new connection), jumping into our chains, recording every rule that matched. Pure.

use std::net::Ipv4Addr;

use super::eval::Matched;
use super::rule::{self, Action, Env};
use super::{Host, Packet};
use crate::model::Table;

/// Where evaluation of one chain ended.
#[derive(PartialEq)]
pub(crate) enum End {
    Continue,
    Return,
    Accept,
}

pub(crate) struct Walk<'h> {
    pub host: &'h Host,
    pub pkt: Packet,
    pub socket: bool,
    pub matched: Vec<Matched>,
    pub skipped: Vec<String>,
    pub used: Vec<String>,
    pub tproxy: Option<u16>,
}

impl Walk<'_> {
    pub(crate) fn hook(&mut self, hook: &str, new_conn: bool) {
        self.chain(Table::Mangle, hook);
        if new_conn {
            self.chain(Table::Nat, hook);
        }
    }

    pub(crate) fn chain(&mut self, table: Table, chain: &str) -> End {
        self.used.push(format!("chain {chain}"));
        for (i, r) in self.host.chain(table, chain).into_iter().enumerate() {
            let end = match rule::parse(&r.spec) {
                Ok(p) => self.apply(table, (r.line(), i + 1), &p),
                Err(tok) => {
                    self.skipped
                        .push(format!("{} {} (`{tok}`)", table.name(), r.line()));
                    End::Continue
                }
            };
            if end != End::Continue {
                return end;
            }
        }
        End::Continue
    }

    fn holds(&mut self, p: &rule::Parsed) -> bool {
        let h = self.host;
        let set = |n: &str, ip: Ipv4Addr| h.in_set(n, ip);
        let env = Env {
            set: &set,
            socket: self.socket,
        };
        for c in &p.conds {
            if let rule::Cond::Set(n, d) = c {
                let ip = if *d == rule::Dir::Src {
                    self.pkt.src
                } else {
                    self.pkt.dst
                };
                self.used.push(format!("ipset {n} member {ip}"));
                self.used.push(format!("ipset {n}"));
            }
        }
        p.conds.iter().all(|c| c.holds(&self.pkt, &env))
    }

    fn apply(&mut self, table: Table, line: (String, usize), p: &rule::Parsed) -> End {
        if !self.holds(p) {
            return End::Continue;
        }
        let (m0, c0) = (self.pkt.mark, self.pkt.connmark);
        let (effect, end) = match &p.action {
            Action::Mark(v, k) => {
                self.pkt.mark = rule::xmark(m0, *v, *k);
                (
                    format!("mark {m0:#x} -> {:#x}", self.pkt.mark),
                    End::Continue,
                )
            }
            Action::SaveMark(n, c) => {
                self.pkt.connmark = (c0 & !c) | (m0 & n);
                (
                    format!("connmark {c0:#x} -> {:#x}", self.pkt.connmark),
                    End::Continue,
                )
            }
            Action::Tproxy(port, v, k) => {
                self.pkt.mark = rule::xmark(m0, *v, *k);
                self.tproxy = Some(*port);
                let m = self.pkt.mark;
                (
                    format!("TPROXY to 127.0.0.1:{port}, mark {m0:#x} -> {m:#x}"),
                    End::Accept,
                )
            }
            Action::Return => ("RETURN".into(), End::Return),
            Action::Accept => ("ACCEPT".into(), End::Accept),
            Action::Jump(c) => {
                self.record(table, line, format!("jump {c}"), End::Continue);
                return match self.chain(table, c) {
                    End::Accept => End::Accept,
                    _ => End::Continue,
                };
            }
        };
        self.record(table, line, effect, end)
    }

    fn record(
        &mut self,
        table: Table,
        (line, position): (String, usize),
        effect: String,
        end: End,
    ) -> End {
        self.used.push(line.clone());
        self.matched.push(Matched {
            table: table.name(),
            line,
            position,
            effect,
        });
        end
    }
}

pub(crate) fn walk(host: &Host, pkt: Packet, socket: bool) -> Walk<'_> {
    Walk {
        host,
        pkt,
        socket,
        matched: Vec::new(),
        skipped: Vec::new(),
        used: Vec::new(),
        tproxy: None,
    }
}
