//! Reads Prometheus text exposition into families for comparisons between proxies.

use std::collections::{BTreeMap, BTreeSet};

/// One sample series: its name and its `key → value` labels.
pub type Series = (String, BTreeMap<String, String>);

/// Splits `name{k="v",...} value` into name and labels; `None` for comments and blanks.
pub fn series(line: &str) -> Option<Series> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let series = line.rsplit_once(' ').map_or(line, |(s, _)| s);
    let (name, labels) = series.split_once('{').unwrap_or((series, ""));
    let labels = labels
        .trim_end_matches('}')
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect();
    Some((name.to_string(), labels))
}

/// Sample name → (type of the last `# TYPE`, label keys seen), for either exposition style
/// (`# TYPE x counter` + `x_total` samples, or `# TYPE x_total counter`).
pub fn families(text: &str) -> BTreeMap<String, (String, BTreeSet<String>)> {
    let (mut kind, mut out) = (String::new(), BTreeMap::new());
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            kind = t.split_once(' ').map_or("", |(_, k)| k).to_string();
        } else if let Some((name, labels)) = series(line) {
            let entry = out
                .entry(name)
                .or_insert_with(|| (kind.clone(), BTreeSet::new()));
            entry.1.extend(labels.into_keys());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_styles_give_the_sample_name_its_type_and_keys() {
        let f = families(
            "# TYPE a counter\na_total{x=\"1\",y=\"2\"} 3\n# TYPE b_total counter\nb_total 1\n",
        );
        assert_eq!(f["a_total"].0, "counter");
        assert_eq!(f["a_total"].1.len(), 2);
        assert_eq!(f["b_total"].0, "counter");
        assert_eq!(series("# x"), None);
    }
}
