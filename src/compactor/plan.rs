//! Which files of a partition a merge takes: a pure function of the catalog's
//! file list, so the rule that keeps deduplication right is tested on its own.
//!
//! Readers order a partition's files by WAL sequence and let the newest win.
//! A merge's output takes the highest sequence of its inputs, so its inputs
//! must be a run of files with no other file's sequence between theirs:
//! otherwise the output would outrank a file holding newer writes than some of
//! its rows. Taking the oldest files of a level, in sequence order, gives such
//! a run, because every level's files are newer than the next level's (a merge
//! of the oldest files of level L writes the newest file of level L+1).

use crate::catalog::FileEntry;

/// What to do with one level of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LevelPlan {
    /// Nothing: fewer than two files, or a single file that may still merge
    /// with the next one.
    Nothing,
    /// Merge these files (at least two, oldest first) into one file of the
    /// next level.
    Merge(Vec<FileEntry>),
    /// This file and the next one together pass the level's size: it moves
    /// up a level unchanged (only its catalog entry changes), so the files
    /// behind it can merge.
    Promote(FileEntry),
}

/// Plans the merge of the files of `level` among `files` (one partition's):
/// the oldest files of the level, on the same layer as the oldest, while
/// their sizes add up to at most `max_bytes` and there are at most
/// `max_files` of them.
pub fn plan_level(files: &[FileEntry], level: u8, max_bytes: u64, max_files: usize) -> LevelPlan {
    let mut candidates: Vec<&FileEntry> = files.iter().filter(|f| f.level == level).collect();
    candidates.sort_by_key(|f| (f.wal_sequence, f.chunk_time));
    let Some(first) = candidates.first() else { return LevelPlan::Nothing };
    let mut taken: Vec<FileEntry> = vec![(*first).clone()];
    let mut bytes = first.size_bytes;
    let mut full = false;
    for file in &candidates[1..] {
        if file.layer != first.layer || taken.len() >= max_files.max(2) {
            break;
        }
        if bytes.saturating_add(file.size_bytes) > max_bytes {
            full = true;
            break;
        }
        bytes += file.size_bytes;
        taken.push((*file).clone());
    }
    match taken.len() {
        1 if full => LevelPlan::Promote(taken.remove(0)),
        1 => LevelPlan::Nothing,
        _ => LevelPlan::Merge(taken),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(id: &str, level: u8, sequence: u64, size: u64, layer: &str) -> FileEntry {
        FileEntry {
            id: id.into(),
            layer: layer.into(),
            path: format!("date=2024-01-01/hour=00/{id}.{level}.parquet"),
            level,
            size_bytes: size,
            row_count: 1,
            min_time: 0,
            max_time: 1,
            wal_sequence: sequence,
            deletes_applied: 0,
            chunk_time: sequence as i64,
        }
    }

    fn ids(plan: &LevelPlan) -> Vec<String> {
        match plan {
            LevelPlan::Merge(files) => files.iter().map(|f| f.id.clone()).collect(),
            LevelPlan::Promote(file) => vec![format!("promote {}", file.id)],
            LevelPlan::Nothing => Vec::new(),
        }
    }

    #[test]
    fn takes_the_oldest_files_of_the_level_in_sequence_order() {
        let files = vec![
            file("c", 1, 30, 10, "l0"),
            file("old", 2, 5, 10, "l0"),
            file("a", 1, 10, 10, "l0"),
            file("b", 1, 20, 10, "l0"),
        ];
        assert_eq!(ids(&plan_level(&files, 1, 100, 100)), ["a", "b", "c"]);
        assert_eq!(ids(&plan_level(&files, 2, 100, 100)), Vec::<String>::new());
    }

    #[test]
    fn stops_at_the_size_cap_without_skipping_a_file() {
        // b does not fit beside a; c would, but taking it would skip b.
        let files = vec![file("a", 1, 1, 60, "l0"), file("b", 1, 2, 60, "l0"), file("c", 1, 3, 10, "l0")];
        assert_eq!(ids(&plan_level(&files, 1, 100, 100)), ["promote a"]);
        let rest: Vec<FileEntry> = files[1..].to_vec();
        assert_eq!(ids(&plan_level(&rest, 1, 100, 100)), ["b", "c"]);
    }

    #[test]
    fn a_lone_file_waits_for_company() {
        assert_eq!(plan_level(&[file("a", 1, 1, 500, "l0")], 1, 100, 100), LevelPlan::Nothing);
    }

    #[test]
    fn stops_at_a_layer_change_and_at_the_file_count() {
        let files = vec![file("a", 1, 1, 1, "s3"), file("b", 1, 2, 1, "s3"), file("c", 1, 3, 1, "l0")];
        assert_eq!(ids(&plan_level(&files, 1, 100, 100)), ["a", "b"]);
        // A small file alone on its layer waits rather than move up.
        assert_eq!(plan_level(&files[1..], 1, 100, 100), LevelPlan::Nothing);
        let many: Vec<FileEntry> = (0..10).map(|i| file(&format!("f{i}"), 1, i, 1, "l0")).collect();
        assert_eq!(ids(&plan_level(&many, 1, 100, 4)), ["f0", "f1", "f2", "f3"]);
    }
}
