//! Resolving what a user or a model calls a task: `t7`, `7`, "auth refactor",
//! or "the auth one".
//!
//! Order: id, then exact name (case-insensitive), then word overlap between the
//! reference and the task's name. When several tasks match equally well the
//! answer is `Ambiguous` with the candidates, so the caller asks back; a guess
//! would cancel the wrong task.

use super::registry::{TaskRecord, numeric_id};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// Index into the slice given.
    Found(usize),
    /// Several plausible tasks (indices), best first.
    Ambiguous(Vec<usize>),
    NotFound,
}

const STOP_WORDS: &[&str] =
    &["the", "a", "an", "task", "tasks", "one", "that", "this", "my", "of", "on", "for", "to", "in", "job", "and"];

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .filter(|w| !w.is_empty() && !STOP_WORDS.contains(&w.as_str()))
        .collect()
}

/// Finds the task `reference` points at among `tasks` (only those for which
/// `eligible` is true take part in name matching; ids always resolve).
pub(crate) fn resolve(reference: &str, tasks: &[TaskRecord], eligible: impl Fn(&TaskRecord) -> bool) -> Resolution {
    let r = reference.trim();
    if r.is_empty() {
        return Resolution::NotFound;
    }
    let as_id = if r.chars().all(|c| c.is_ascii_digit()) { format!("t{r}") } else { r.to_lowercase() };
    if numeric_id(&as_id).is_some()
        && let Some(i) = tasks.iter().position(|t| t.id == as_id)
    {
        return Resolution::Found(i);
    }
    let exact: Vec<usize> =
        (0..tasks.len()).filter(|&i| eligible(&tasks[i]) && tasks[i].name.trim().eq_ignore_ascii_case(r)).collect();
    match exact.len() {
        1 => return Resolution::Found(exact[0]),
        n if n > 1 => return Resolution::Ambiguous(newest_first(exact, tasks)),
        _ => {}
    }
    let wanted = words(r);
    if wanted.is_empty() {
        return Resolution::NotFound;
    }
    let mut scored: Vec<(usize, usize)> = Vec::new();
    for (i, t) in tasks.iter().enumerate() {
        if !eligible(t) {
            continue;
        }
        let have = words(&t.name);
        let hits = wanted
            .iter()
            .filter(|w| have.iter().any(|h| h == *w || (w.len() >= 4 && h.starts_with(w.as_str()))))
            .count();
        if hits > 0 {
            scored.push((i, hits));
        }
    }
    let Some(best) = scored.iter().map(|&(_, s)| s).max() else {
        return Resolution::NotFound;
    };
    let top: Vec<usize> = scored.iter().filter(|&&(_, s)| s == best).map(|&(i, _)| i).collect();
    if top.len() == 1 { Resolution::Found(top[0]) } else { Resolution::Ambiguous(newest_first(top, tasks)) }
}

fn newest_first(mut idx: Vec<usize>, tasks: &[TaskRecord]) -> Vec<usize> {
    idx.sort_by_key(|&i| std::cmp::Reverse(numeric_id(&tasks[i].id).unwrap_or(0)));
    idx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::registry::{TaskState, sample};

    fn tasks() -> Vec<TaskRecord> {
        vec![
            sample("t1", "auth refactor", TaskState::Succeeded),
            sample("t2", "website tests", TaskState::Running),
            sample("t3", "auth tests", TaskState::Running),
            sample("t10", "docs", TaskState::Running),
        ]
    }

    #[test]
    fn ids_and_bare_numbers() {
        let t = tasks();
        assert_eq!(resolve("t3", &t, |_| true), Resolution::Found(2));
        assert_eq!(resolve("T10", &t, |_| true), Resolution::Found(3));
        assert_eq!(resolve("10", &t, |_| true), Resolution::Found(3));
        assert_eq!(resolve("t99", &t, |_| true), Resolution::NotFound);
    }

    #[test]
    fn exact_name_then_words() {
        let t = tasks();
        assert_eq!(resolve("Auth Refactor", &t, |_| true), Resolution::Found(0));
        assert_eq!(resolve("the refactor", &t, |_| true), Resolution::Found(0));
        assert_eq!(resolve("website", &t, |_| true), Resolution::Found(1));
        assert_eq!(resolve("auth tests task", &t, |_| true), Resolution::Found(2));
    }

    #[test]
    fn several_matches_are_ambiguous_newest_first() {
        let t = tasks();
        assert_eq!(resolve("auth", &t, |_| true), Resolution::Ambiguous(vec![2, 0]));
        assert_eq!(resolve("tests", &t, |_| true), Resolution::Ambiguous(vec![2, 1]));
        assert_eq!(resolve("auth", &t, |t| t.state.is_active()), Resolution::Found(2), "filter narrows");
    }

    #[test]
    fn nothing_plausible() {
        let t = tasks();
        assert_eq!(resolve("", &t, |_| true), Resolution::NotFound);
        assert_eq!(resolve("the task", &t, |_| true), Resolution::NotFound);
        assert_eq!(resolve("kubernetes", &t, |_| true), Resolution::NotFound);
    }
}
