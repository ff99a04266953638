//! Log lines and trace entries kept for the callers of their cascades, by
//! cascade: a caller takes its own in time proportional to them, not to
//! everything kept (lines of cascades nobody waits for — fired timers,
//! effect outcomes — pile up to the bound). Past the bound the oldest
//! cascades' lines are dropped.

use std::collections::{HashMap, VecDeque};

use super::{LogLine, TraceEntry};

/// What belongs to one cascade.
pub(super) trait OfCascade {
    fn cascade(&self) -> &str;
}

impl OfCascade for LogLine {
    fn cascade(&self) -> &str {
        &self.correlation_id
    }
}

impl OfCascade for TraceEntry {
    fn cascade(&self) -> &str {
        &self.correlation_id
    }
}

/// Lines by cascade, and the order cascades first got lines in.
pub(super) struct Retained<T> {
    /// By cascade: when it first got lines since it was last taken (a
    /// generation), and its lines.
    by_cascade: HashMap<String, (u64, Vec<T>)>,
    /// Oldest first, with their generation: an entry whose cascade was taken
    /// (or taken and given lines again) since is stale and skipped.
    order: VecDeque<(String, u64)>,
    next_generation: u64,
    count: usize,
}

impl<T> Default for Retained<T> {
    fn default() -> Self {
        Retained {
            by_cascade: HashMap::new(),
            order: VecDeque::new(),
            next_generation: 0,
            count: 0,
        }
    }
}

impl<T: OfCascade> Retained<T> {
    /// Keep `lines` (a committed batch's), then drop the oldest cascades'
    /// once more than `max` and a quarter are kept, down to `max`.
    pub(super) fn extend(&mut self, lines: Vec<T>, max: usize) {
        for line in lines {
            let kept = match self.by_cascade.get_mut(line.cascade()) {
                Some((_, kept)) => kept,
                None => {
                    let generation = self.next_generation;
                    self.next_generation += 1;
                    self.order.push_back((line.cascade().to_owned(), generation));
                    let entry = self.by_cascade.entry(line.cascade().to_owned());
                    &mut entry.or_insert((generation, Vec::new())).1
                }
            };
            kept.push(line);
            self.count += 1;
        }
        if self.count > max + max / 4 {
            while self.count > max {
                let Some((oldest, generation)) = self.order.pop_front() else {
                    break;
                };
                if self.by_cascade.get(&oldest).is_some_and(|(g, _)| *g == generation) {
                    let (_, dropped) = self.by_cascade.remove(&oldest).expect("just found");
                    self.count -= dropped.len();
                }
            }
        }
        // Taken cascades leave stale entries behind: forget them now and then.
        if self.order.len() > 2 * self.by_cascade.len() + 1024 {
            let by_cascade = &self.by_cascade;
            self.order
                .retain(|(id, generation)| by_cascade.get(id).is_some_and(|(g, _)| g == generation));
        }
    }

    /// A copy of cascade `id`'s lines, which stay kept.
    pub(super) fn peek(&self, id: &str) -> Vec<T>
    where
        T: Clone,
    {
        self.by_cascade
            .get(id)
            .map(|(_, lines)| lines.clone())
            .unwrap_or_default()
    }

    /// The lines of cascade `id`, taken out.
    pub(super) fn take(&mut self, id: &str) -> Vec<T> {
        let (_, taken) = self.by_cascade.remove(id).unwrap_or_default();
        self.count -= taken.len();
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host_api::Level;

    fn line(cascade: &str, message: &str) -> LogLine {
        LogLine {
            correlation_id: cascade.into(),
            plugin: "p".into(),
            level: Level::Info,
            message: message.into(),
        }
    }

    #[test]
    fn a_cascade_takes_its_own_lines_in_order_and_the_oldest_cascades_go_past_the_bound() {
        let mut retained = Retained::default();
        retained.extend(vec![line("a", "1"), line("b", "2"), line("a", "3")], 10);
        let taken: Vec<String> = retained.take("a").into_iter().map(|l| l.message).collect();
        assert_eq!(taken, ["1", "3"]);
        assert!(retained.take("a").is_empty(), "handed over once");
        // 13 lines against a bound of 10: the oldest cascades go, whole.
        let lines = (0..13).map(|i| line(&format!("c{i}"), "x")).collect();
        retained.extend(lines, 10);
        assert!(retained.take("b").is_empty() && retained.take("c2").is_empty());
        assert_eq!(retained.take("c3").len(), 1);
        assert_eq!(retained.take("c12").len(), 1);
    }

    #[test]
    fn a_cascade_given_lines_again_after_a_take_is_as_new_as_its_new_lines() {
        let mut retained = Retained::default();
        retained.extend(vec![line("a", "old")], 4);
        retained.take("a");
        retained.extend(vec![line("b", "1"), line("c", "2"), line("a", "again")], 4);
        // Past the bound: `b` is the oldest now, not `a`.
        retained.extend((0..3).map(|i| line(&format!("d{i}"), "x")).collect(), 4);
        assert!(retained.take("b").is_empty());
        assert_eq!(retained.take("a").len(), 1, "its new line is kept");
    }
}
