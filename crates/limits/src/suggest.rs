//! Near-match suggestions for mistyped instance-type names.

/// Up to `max` names from `known` closest to `wanted`: same family first, then by edit distance.
pub fn near_matches<'a>(
    wanted: &str,
    known: impl Iterator<Item = &'a String>,
    max: usize,
) -> Vec<String> {
    let family = wanted.split('.').next().unwrap_or(wanted);
    let mut scored: Vec<(usize, &String)> = known
        .map(|k| {
            let mut d = levenshtein(wanted, k);
            // A name in the same family (`m5` of `m5.larg`) is a better hint than a lookalike.
            if k.split('.').next() != Some(family) {
                d += 2;
            }
            (d, k)
        })
        .filter(|(d, _)| *d <= 4)
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(max)
        .map(|(_, k)| k.clone())
        .collect()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        for (a, b, d) in [
            ("m5.large", "m5.large", 0),
            ("m5.larg", "m5.large", 1),
            ("m5.xlarge", "m5.large", 1),
            ("", "abc", 3),
        ] {
            assert_eq!(levenshtein(a, b), d, "{a} vs {b}");
        }
    }

    #[test]
    fn suggests_family_first() {
        let known: Vec<String> = ["m5.large", "m6.large", "m5.xlarge", "c5.large"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let got = near_matches("m5.larg", known.iter(), 3);
        assert_eq!(got[0], "m5.large");
        assert!(got.contains(&"m5.xlarge".to_string()));
    }
}
