//! How one generation becomes the next, one resource at a time: putting or dropping a
//! resource updates its entries in every index (O(log N) each, O(its endpoints' services)
//! for a workload) and notes in [`Dirty`] where it may have broken a rule (a key given a
//! second owner, a workload put, a service taken away), so the checks
//! ([`super::validate::check`]) look there only.

use super::index::{
    add_owner, remove_owner, with_policy, without_policy, Endpoints, Name, P, S, W,
};
use super::local::Workload;
use super::policy::Scope;
use super::snapshot::{Buckets, Snapshot};
use super::validate::Dirty;

impl Snapshot {
    /// Puts `w` in place of the workload of the same name (if any).
    pub(super) fn put_workload(&mut self, w: W, d: &mut Dirty) {
        let old = self.workloads.get(&w.name).cloned();
        if old.as_ref().is_some_and(|o| o.item == w.item) {
            return;
        }
        if let Some(o) = &old {
            self.unindex_workload(o, Some(&w.item));
        }
        self.index_workload(&w, old.as_ref().map(|o| &o.item), d);
        self.workloads.insert_mut(w.name.clone(), w);
        d.changed = true;
    }

    pub(super) fn drop_workload(&mut self, name: &str, d: &mut Dirty) {
        let Some(old) = self.workloads.get(name).cloned() else {
            return;
        };
        self.unindex_workload(&old, None);
        self.workloads.remove_mut(name);
        d.changed = true;
    }

    /// Files `w` in every index. `old`: the workload of the same name it replaces (whose
    /// endpoint entries are still listed). A key that now has two owners goes to `d`.
    fn index_workload(&mut self, w: &W, old: Option<&Workload>, d: &mut Dirty) {
        for ip in &w.item.workload_ips {
            if add_owner(&mut self.ix.by_ip, *ip, w.clone()) {
                d.ips.push(*ip);
            }
        }
        if self.key_claimed(w) {
            d.workload_keys.push(w.key.clone());
        }
        for (key, ports) in &w.item.services {
            let ports = ports.iter().map(|(s, t)| (*s, *t)).collect();
            let listed = old.is_some_and(|o| o.services.contains_key(key));
            self.edit_endpoints(key, |e| e.put(w, ports, listed));
        }
        if self.on_our_node(&w.item) {
            let id = self.identity(&w.item);
            let n = self.ix.local_ids.get(&id).copied().unwrap_or(0);
            self.ix.local_ids.insert_mut(id, n + 1);
            self.ix.local.insert_mut(w.name.clone(), w.clone());
        }
        d.workloads.push(w.name.clone());
    }

    /// Files `w` under its key when that is not its name; whether another workload
    /// already claims the key (by name or by key).
    fn key_claimed(&mut self, w: &W) -> bool {
        if *w.key == *w.name {
            return self.ix.workload_keys.contains_key(&w.key);
        }
        let named = self.workloads.get(&w.key).is_some_and(|o| o.key == w.key);
        add_owner(&mut self.ix.workload_keys, w.key.clone(), w.name.clone()) || named
    }

    /// Takes `w` out of every index. `next`: the workload replacing it, whose endpoint
    /// entries then replace `w`'s in place (a service keeps its round-robin order).
    fn unindex_workload(&mut self, w: &W, next: Option<&Workload>) {
        for ip in &w.item.workload_ips {
            remove_owner(&mut self.ix.by_ip, ip, &w.name);
        }
        if *w.key != *w.name {
            remove_owner(&mut self.ix.workload_keys, &*w.key, &w.name);
        }
        for key in w.item.services.keys() {
            if next.is_none_or(|n| !n.services.contains_key(key)) {
                self.edit_endpoints(key, |e| e.remove(&w.name));
            }
        }
        if self.on_our_node(&w.item) {
            self.ix.local.remove_mut(&w.name);
            let id = self.identity(&w.item);
            match self.ix.local_ids.get(&id).copied() {
                Some(n) if n > 1 => {
                    self.ix.local_ids.insert_mut(id, n - 1);
                }
                _ => {
                    self.ix.local_ids.remove_mut(&id);
                }
            }
        }
    }

    /// Edits `key`'s endpoints in place (a node this generation does not share with the
    /// previous one is not copied again: a cold start builds each list once).
    fn edit_endpoints(&mut self, key: &str, edit: impl FnOnce(&mut Endpoints)) {
        let empty = match self.ix.endpoints.get_mut(key) {
            Some(e) => {
                edit(e);
                e.is_empty()
            }
            None => {
                let mut e = Endpoints::default();
                edit(&mut e);
                if !e.is_empty() {
                    self.ix.endpoints.insert_mut(key.into(), e);
                }
                false
            }
        };
        if empty {
            self.ix.endpoints.remove_mut(key);
        }
    }

    /// Puts `s` in place of the service of the same name (if any).
    pub(super) fn put_service(&mut self, s: S, d: &mut Dirty) {
        let old = self.services.get(&s.name).cloned();
        if old.as_ref().is_some_and(|o| o.item == s.item) {
            return;
        }
        if let Some(o) = &old {
            self.unindex_service(o, d);
        }
        for vip in &s.item.vips {
            if add_owner(&mut self.ix.by_vip, vip.ip, s.clone()) {
                d.vips.push(vip.ip);
            }
        }
        let hostname: Box<str> = s.item.hostname.as_str().into();
        if add_owner(&mut self.ix.by_hostname, hostname.clone(), s.clone()) {
            d.hostnames.push(hostname);
        }
        add_owner(&mut self.ix.service_keys, s.key.clone(), s.clone());
        self.services.insert_mut(s.name.clone(), s);
        d.changed = true;
    }

    pub(super) fn drop_service(&mut self, name: &str, d: &mut Dirty) {
        let Some(old) = self.services.get(name).cloned() else {
            return;
        };
        self.unindex_service(&old, d);
        self.services.remove_mut(name);
        d.changed = true;
    }

    fn unindex_service(&mut self, s: &S, d: &mut Dirty) {
        for vip in &s.item.vips {
            remove_owner(&mut self.ix.by_vip, &vip.ip, &s.name);
        }
        remove_owner(&mut self.ix.by_hostname, s.item.hostname.as_str(), &s.name);
        remove_owner(&mut self.ix.service_keys, &*s.key, &s.name);
        d.gone_service_keys.push(s.key.clone());
    }

    /// Puts `p` in place of the policy of the same name (if any).
    pub(super) fn put_policy(&mut self, p: P, d: &mut Dirty) {
        let old = self.policies.get(&p.name).cloned();
        if old.as_ref().is_some_and(|o| o.item == p.item) {
            return;
        }
        if let Some(o) = &old {
            self.unindex_policy(o);
        }
        if add_owner(&mut self.ix.policy_keys, p.key.clone(), p.clone()) {
            d.policy_keys.push(p.key.clone());
        }
        if !p.item.dry_run {
            self.bucket_policy(&p);
        }
        self.policies.insert_mut(p.name.clone(), p);
        d.changed = true;
    }

    pub(super) fn drop_policy(&mut self, name: &str, d: &mut Dirty) {
        let Some(old) = self.policies.get(name).cloned() else {
            return;
        };
        self.unindex_policy(&old);
        self.policies.remove_mut(name);
        d.changed = true;
    }

    /// Files an enforced policy under the scope it applies to.
    fn bucket_policy(&mut self, p: &P) {
        let ns = p.item.namespace.as_str();
        match p.item.scope {
            Scope::Global => self.ix.global = Some(with_policy(self.ix.global.as_ref(), p)),
            Scope::Namespace => {
                let list = with_policy(self.ix.by_namespace.get(ns), p);
                self.ix.by_namespace.insert_mut(ns.into(), list);
            }
            Scope::WorkloadSelector => {
                let mut names = self.ix.by_selector.get(ns).cloned().unwrap_or_default();
                for w in p.item.selector.iter().flat_map(|s| &s.workloads) {
                    let list = with_policy(names.get(w.as_str()), p);
                    names.insert_mut(w.as_str().into(), list);
                }
                if !names.is_empty() {
                    self.ix.by_selector.insert_mut(ns.into(), names);
                }
            }
        }
    }

    fn unindex_policy(&mut self, p: &P) {
        remove_owner(&mut self.ix.policy_keys, &*p.key, &p.name);
        let ns = p.item.namespace.as_str();
        self.ix.global = self
            .ix
            .global
            .take()
            .and_then(|l| without_policy(&l, &p.name));
        edit_bucket(&mut self.ix.by_namespace, ns, &p.name);
        let Some(mut names) = self.ix.by_selector.get(ns).cloned() else {
            return;
        };
        for w in p.item.selector.iter().flat_map(|s| &s.workloads) {
            edit_bucket(&mut names, w, &p.name);
        }
        if names.is_empty() {
            self.ix.by_selector.remove_mut(ns);
        } else {
            self.ix.by_selector.insert_mut(ns.into(), names);
        }
    }
}

/// Removes the policy `name` from `map[key]`'s list.
fn edit_bucket(map: &mut Buckets, key: &str, name: &Name) {
    let Some(list) = map.get(key) else { return };
    match without_policy(list, name) {
        Some(rest) => {
            map.insert_mut(key.into(), rest);
        }
        None => {
            map.remove_mut(key);
        }
    }
}
