//! One metric's usable samples keyed by pod name: a vector kept sorted by name.
//!
//! The calculator looks pods up, removes the ignored and unready ones and fills in the
//! missing ones, the operations of a map. A target has a handful of pods and a decision builds
//! this once per metric, so a sorted vector does them with one allocation where a `BTreeMap`
//! allocates nodes and compares names again on every insertion (it was a sixth of a
//! decision's cost at 10,000 targets).

use crate::time::Time;

/// One pod's usable sample, in milli-units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodMetric {
    /// Value in milli-units.
    pub milli: i64,
    /// When the sample's window ended.
    pub at: Time,
    /// The sample's window, ms.
    pub window_ms: i64,
}

/// Samples by pod name, names borrowed from the observation; each name at most once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodSamples<'a>(Vec<(&'a str, PodMetric)>);

impl<'a> PodSamples<'a> {
    /// The sample of a pod.
    pub fn get(&self, pod: &str) -> Option<&PodMetric> {
        self.position(pod).ok().map(|i| &self.0[i].1)
    }

    /// The sample of a pod, looked for first at `hint` (the pods are usually listed in the
    /// order their samples sort in, so a walk over them passes the last position plus one and
    /// compares one name per pod), with the position it was found at.
    pub fn get_near(&self, pod: &str, hint: usize) -> Option<(usize, &PodMetric)> {
        match self.0.get(hint) {
            Some((name, metric)) if *name == pod => Some((hint, metric)),
            _ => self.position(pod).ok().map(|i| (i, &self.0[i].1)),
        }
    }

    /// Sets a pod's sample, replacing any it had.
    pub fn insert(&mut self, pod: &'a str, metric: PodMetric) {
        match self.position(pod) {
            Ok(i) => self.0[i].1 = metric,
            Err(i) => self.0.insert(i, (pod, metric)),
        }
    }

    /// Drops a pod's sample, if it has one.
    pub fn remove(&mut self, pod: &str) {
        if let Ok(i) = self.position(pod) {
            self.0.remove(i);
        }
    }

    /// How many pods have a sample.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no pod has a sample.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Pods and samples, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &PodMetric)> + '_ {
        self.0.iter().map(|(pod, m)| (*pod, m))
    }

    /// Samples, in pod name order.
    pub fn values(&self) -> impl Iterator<Item = &PodMetric> + '_ {
        self.0.iter().map(|(_, m)| m)
    }

    fn position(&self, pod: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(name, _)| (*name).cmp(pod))
    }
}

/// Collects samples as a map would: where a pod appears twice, the later sample wins.
impl<'a> FromIterator<(&'a str, PodMetric)> for PodSamples<'a> {
    fn from_iter<I: IntoIterator<Item = (&'a str, PodMetric)>>(iter: I) -> Self {
        let iter = iter.into_iter();
        // Sized for all of them at once: the sanitizer's filter reports no lower bound, and
        // growing from four would reallocate on most targets.
        let mut samples = Vec::with_capacity(iter.size_hint().1.unwrap_or(0));
        samples.extend(iter);
        if !samples.windows(2).all(|w| w[0].0 < w[1].0) {
            // Stable, so equal names keep their order and the last of each run is the later.
            samples.sort_by(|a, b| a.0.cmp(b.0));
            let mut kept: Vec<(&'a str, PodMetric)> = Vec::with_capacity(samples.len());
            for sample in samples {
                match kept.last_mut() {
                    Some(last) if last.0 == sample.0 => *last = sample,
                    _ => kept.push(sample),
                }
            }
            samples = kept;
        }
        PodSamples(samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn metric(milli: i64) -> PodMetric {
        PodMetric {
            milli,
            at: Time::ZERO,
            window_ms: 0,
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(usize, i64),
        Remove(usize),
    }

    const NAMES: [&str; 6] = ["a", "b", "pod-1", "pod-10", "pod-2", "z"];

    proptest! {
        /// Every operation answers as `BTreeMap` does, from any collected start.
        #[test]
        fn it_behaves_as_a_btree_map(
            start in prop::collection::vec((0..NAMES.len(), -5i64..5), 0..10),
            ops in prop::collection::vec(
                prop_oneof![
                    (0..NAMES.len(), -5i64..5).prop_map(|(p, v)| Op::Insert(p, v)),
                    (0..NAMES.len()).prop_map(Op::Remove),
                ],
                0..10,
            ),
        ) {
            let pairs = start.iter().map(|&(p, v)| (NAMES[p], metric(v)));
            let mut map: BTreeMap<&str, PodMetric> = pairs.clone().collect();
            let mut samples: PodSamples = pairs.collect();
            for op in ops {
                match op {
                    Op::Insert(p, v) => {
                        map.insert(NAMES[p], metric(v));
                        samples.insert(NAMES[p], metric(v));
                    }
                    Op::Remove(p) => {
                        map.remove(NAMES[p]);
                        samples.remove(NAMES[p]);
                    }
                }
                let listed: Vec<(&str, &PodMetric)> = samples.iter().collect();
                let expected: Vec<(&str, &PodMetric)> = map.iter().map(|(k, v)| (*k, v)).collect();
                prop_assert_eq!(listed, expected);
                prop_assert_eq!(samples.len(), map.len());
                for (hint, name) in NAMES.iter().enumerate() {
                    prop_assert_eq!(samples.get(name), map.get(name));
                    prop_assert_eq!(samples.get_near(name, hint).map(|(_, m)| m), map.get(name));
                }
            }
        }
    }
}
