//! A simulated disk for crash tests: it keeps, per file, what was written and
//! what the device holds (the last sync, or a write-back the kernel did on its
//! own after some write), and per directory which entries were synced, so a
//! "power cut" can leave exactly what a real disk may leave: what the device
//! held of every file, some of what it did not (a torn tail, or pages in any
//! order), and any subset of the directory operations not yet synced. So a
//! file cut short and not synced since may come back whole. It also fails
//! chosen calls with an I/O error or a full disk.
//!
//! Calls on the disk itself (create, rename, remove, sync a directory) are
//! not tied to a process: a test stops the old process's threads (closes its
//! WAL) before it restarts the disk.
//!
//! Everything it does follows from its seed and the calls made on it, so a
//! failing seed fails the same way again; only the files' modification
//! times are the real clock's (the orphan sweep compares them with it). Compiled only for tests (the
//! `fault-injection` feature), like [`crate::faults`].

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::disk::{Disk, DiskEntry, DiskFile, DiskStat};

/// The calls a fault can be planned on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimCall {
    /// [`Disk::create_dir`].
    CreateDir,
    /// [`Disk::read_dir`].
    ReadDir,
    /// [`Disk::read`].
    Read,
    /// [`Disk::stat`].
    Stat,
    /// [`Disk::create`] and [`Disk::open_write`].
    Open,
    /// A write to a file.
    Write,
    /// [`DiskFile::sync_data`] and [`DiskFile::sync_all`].
    Sync,
    /// [`DiskFile::truncate_to`].
    Truncate,
    /// [`Disk::rename`].
    Rename,
    /// [`Disk::remove_file`] and [`Disk::remove_dir`].
    Remove,
    /// [`Disk::sync_dir`].
    SyncDir,
}

/// The error a planned fault returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimFault {
    /// `EIO`: the device failed.
    Io,
    /// `ENOSPC`: the disk is full.
    DiskFull,
}

impl SimFault {
    fn error(self, call: SimCall) -> io::Error {
        match self {
            SimFault::Io => io::Error::other(format!("simulated I/O error (EIO) on {call:?}")),
            SimFault::DiskFull => {
                io::Error::new(io::ErrorKind::StorageFull, format!("simulated full disk (ENOSPC) on {call:?}"))
            }
        }
    }
}

/// What a power cut keeps of the data written to a file since its last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tearing {
    /// Nothing: only the synced part survives.
    None,
    /// A prefix of any length: the last writes torn anywhere.
    Prefix,
    /// Any subset of its 4 KiB pages, the others read as zeros: the order in
    /// which a real disk writes back dirty pages is its own.
    Pages,
}

const PAGE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Dir,
    File(usize),
}

#[derive(Debug, Default)]
struct Inode {
    /// What reads see: the page cache.
    data: Vec<u8>,
    /// What the device holds: `data` as of the last sync, or of a
    /// write-back the kernel did on its own since (at random, after a write).
    /// A cut, an extension or a rewrite after it is not on the device until
    /// the next sync.
    synced: Vec<u8>,
    /// When it was last created, written or cut (real time: the orphan
    /// sweep compares it with the clock).
    modified: Option<std::time::SystemTime>,
}

#[derive(Debug, Clone)]
enum DirOp {
    Add { path: PathBuf, node: Node },
    Remove { path: PathBuf },
    Rename { from: PathBuf, to: PathBuf, node: Node },
}

impl DirOp {
    /// The directory whose sync makes the operation durable.
    fn dir(&self) -> &Path {
        let path = match self {
            DirOp::Add { path, .. } | DirOp::Remove { path } => path,
            DirOp::Rename { to, .. } => to,
        };
        path.parent().unwrap_or(Path::new("/"))
    }

    fn apply(&self, namespace: &mut BTreeMap<PathBuf, Node>) {
        match self {
            DirOp::Add { path, node } => {
                namespace.insert(path.clone(), *node);
            }
            DirOp::Remove { path } => {
                namespace.remove(path);
            }
            DirOp::Rename { from, to, node } => {
                if namespace.get(from) == Some(node) {
                    namespace.remove(from);
                }
                namespace.insert(to.clone(), *node);
            }
        }
    }
}

#[derive(Debug)]
struct PlannedFault {
    call: SimCall,
    /// Calls of this kind to let through first.
    skip: u64,
    fault: SimFault,
}

#[derive(Debug)]
struct SimState {
    random: u64,
    inodes: Vec<Inode>,
    live: BTreeMap<PathBuf, Node>,
    durable: BTreeMap<PathBuf, Node>,
    pending: Vec<DirOp>,
    /// Grows at every power cut: handles opened before one are dead.
    generation: u64,
    calls: u64,
    power_cut_at: Option<u64>,
    powered: bool,
    tearing: Tearing,
    /// Whether the kernel writes dirty pages back on its own.
    write_back: bool,
    faults: Vec<PlannedFault>,
    capacity: Option<u64>,
}

/// A simulated disk. Clones share it. A handle from [`SimDisk::process`]
/// stands for one process: once the power has been cut, every call through
/// it fails, even after [`SimDisk::restart`], as a dead process makes none.
#[derive(Debug, Clone)]
pub struct SimDisk {
    state: Arc<Mutex<SimState>>,
    /// The power cycle (generation) of the process this handle belongs to.
    process: Option<u64>,
    /// What the process knows is durable: its own, like the real one's.
    durable_dirs: Arc<Mutex<std::collections::BTreeSet<PathBuf>>>,
}

fn power_off() -> io::Error {
    io::Error::other("simulated power loss: the disk is off")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file or directory", path.display()))
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("/"))
}

impl SimState {
    fn next_random(&mut self) -> u64 {
        // splitmix64
        self.random = self.random.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.random;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_random() % n
        }
    }

    /// Counts a call, and cuts the power or fails it as planned.
    fn enter(&mut self, call: SimCall) -> io::Result<()> {
        match self.enter_planned(call)? {
            Some(fault) => Err(fault.error(call)),
            None => Ok(()),
        }
    }

    /// Counts a call and cuts the power as planned; says which fault the
    /// call is to fail with, if one is planned for it now.
    fn enter_planned(&mut self, call: SimCall) -> io::Result<Option<SimFault>> {
        if !self.powered {
            return Err(power_off());
        }
        self.calls += 1;
        if self.power_cut_at == Some(self.calls) {
            self.cut();
            return Err(power_off());
        }
        if let Some(index) = self.faults.iter().position(|f| f.call == call) {
            let planned = &mut self.faults[index];
            if planned.skip == 0 {
                return Ok(Some(self.faults.remove(index).fault));
            }
            planned.skip -= 1;
        }
        Ok(None)
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.live.get(path) == Some(&Node::Dir)
    }

    fn used(&self) -> u64 {
        self.live
            .values()
            .map(|node| match node {
                Node::File(inode) => self.inodes[*inode].data.len() as u64,
                Node::Dir => 0,
            })
            .sum()
    }

    fn cut(&mut self) {
        let mut namespace = self.durable.clone();
        for op in std::mem::take(&mut self.pending) {
            if self.below(2) == 0 {
                op.apply(&mut namespace);
            }
        }
        // An entry whose directory did not survive cannot be reached.
        let reachable: BTreeMap<PathBuf, Node> = namespace
            .iter()
            .filter(|(path, _)| path.ancestors().skip(1).all(|a| namespace.get(a).is_some_and(|n| *n == Node::Dir)))
            .map(|(path, node)| (path.clone(), *node))
            .collect();
        for index in 0..self.inodes.len() {
            let (data, synced) = {
                let inode = &mut self.inodes[index];
                (std::mem::take(&mut inode.data), std::mem::take(&mut inode.synced))
            };
            let kept = self.survivor(data, synced);
            let inode = &mut self.inodes[index];
            inode.data = kept.clone();
            inode.synced = kept;
        }
        self.live = reachable.clone();
        self.durable = reachable;
        self.generation += 1;
        self.powered = false;
    }

    /// What a power cut leaves of a file written as `data`, synced as `synced`.
    fn survivor(&mut self, data: Vec<u8>, synced: Vec<u8>) -> Vec<u8> {
        if data.len() <= synced.len() || !data.starts_with(&synced) {
            return synced;
        }
        match self.tearing {
            Tearing::None => synced,
            Tearing::Prefix => {
                let extra = self.below((data.len() - synced.len()) as u64 + 1) as usize;
                data[..synced.len() + extra].to_vec()
            }
            Tearing::Pages => {
                let end = synced.len() + self.below((data.len() - synced.len()) as u64 + 1) as usize;
                let mut kept = data[..end].to_vec();
                let mut page_start = synced.len() / PAGE * PAGE;
                while page_start < end {
                    let from = page_start.max(synced.len());
                    let to = (page_start + PAGE).min(end);
                    if self.below(2) == 0 {
                        kept[from..to].fill(0);
                    }
                    page_start += PAGE;
                }
                kept
            }
        }
    }

    fn check_handle(&self, generation: u64) -> io::Result<()> {
        if generation == self.generation {
            Ok(())
        } else {
            Err(io::Error::other("simulated power loss: the file was opened before it"))
        }
    }
}

impl SimDisk {
    /// An empty disk holding only the directory `/`, whose choices (what a
    /// power cut keeps) follow from `seed`.
    pub fn new(seed: u64) -> SimDisk {
        let root: BTreeMap<PathBuf, Node> = [(PathBuf::from("/"), Node::Dir)].into_iter().collect();
        SimDisk {
            process: None,
            durable_dirs: Default::default(),
            state: Arc::new(Mutex::new(SimState {
                random: seed,
                inodes: Vec::new(),
                live: root.clone(),
                durable: root,
                pending: Vec::new(),
                generation: 0,
                calls: 0,
                power_cut_at: None,
                powered: true,
                tearing: Tearing::Prefix,
                write_back: true,
                faults: Vec::new(),
                capacity: None,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Locks the disk for a call of this handle's process.
    fn enter(&self, call: SimCall) -> io::Result<MutexGuard<'_, SimState>> {
        let mut state = self.lock();
        if self.process.is_some_and(|generation| generation != state.generation) {
            return Err(io::Error::other("simulated power loss: this process died in it"));
        }
        state.enter(call)?;
        Ok(state)
    }

    /// A handle for the process running now: its calls fail from the next
    /// power cut on.
    pub fn process(&self) -> SimDisk {
        let generation = self.lock().generation;
        SimDisk { state: Arc::clone(&self.state), process: Some(generation), durable_dirs: Default::default() }
    }

    /// Calls made so far (every call counts, failed ones too).
    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    /// Cuts the power as call number `call` (counted by [`Self::calls`])
    /// begins: that call and every later one fail until [`Self::restart`].
    pub fn power_cut_at(&self, call: u64) {
        self.lock().power_cut_at = Some(call);
    }

    /// Cuts the power now.
    pub fn power_cut(&self) {
        let mut state = self.lock();
        if state.powered {
            state.cut();
        }
    }

    /// Whether the power is on.
    pub fn is_powered(&self) -> bool {
        self.lock().powered
    }

    /// Turns the power back on, for the next process: files opened before
    /// the cut stay dead.
    pub fn restart(&self) {
        let mut state = self.lock();
        state.powered = true;
        state.power_cut_at = None;
        state.faults.clear();
    }

    /// What a power cut keeps of unsynced data.
    pub fn set_tearing(&self, tearing: Tearing) {
        self.lock().tearing = tearing;
    }

    /// Whether the kernel writes a file's dirty pages back on its own now
    /// and then (on by default): then data never synced, or cut off and not
    /// synced since, may survive a power cut.
    pub fn set_write_back(&self, on: bool) {
        self.lock().write_back = on;
    }

    /// Fails the call of kind `call` that comes after `skip` more of them. A
    /// failed write has written a part of its bytes first (any part, from
    /// none to all), as a real one may.
    pub fn fail_call(&self, call: SimCall, skip: u64, fault: SimFault) {
        self.lock().faults.push(PlannedFault { call, skip, fault });
    }

    /// Limits the bytes all files may hold together (`None`: no limit);
    /// a write past it writes what fits and fails with `ENOSPC`.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.lock().capacity = bytes;
    }

    /// Bytes the files hold together.
    pub fn used_bytes(&self) -> u64 {
        self.lock().used()
    }

    /// The paths of every file and directory, for a failing test to show.
    pub fn tree(&self) -> Vec<String> {
        let state = self.lock();
        state
            .live
            .iter()
            .map(|(path, node)| match node {
                Node::Dir => format!("{}/", path.display()),
                Node::File(inode) => format!("{} ({} bytes)", path.display(), state.inodes[*inode].data.len()),
            })
            .collect()
    }

    fn open(&self, path: &Path, truncate: bool) -> io::Result<Box<dyn DiskFile>> {
        let mut state = self.enter(SimCall::Open)?;
        let inode = match state.live.get(path).copied() {
            Some(Node::File(inode)) => {
                if truncate {
                    state.inodes[inode].data.clear();
                    state.inodes[inode].modified = Some(std::time::SystemTime::now());
                }
                inode
            }
            Some(Node::Dir) => {
                return Err(io::Error::new(io::ErrorKind::IsADirectory, format!("{}", path.display())));
            }
            None if truncate => {
                if !state.is_dir(parent(path)) {
                    return Err(not_found(parent(path)));
                }
                state.inodes.push(Inode { modified: Some(std::time::SystemTime::now()), ..Inode::default() });
                let node = Node::File(state.inodes.len() - 1);
                state.live.insert(path.to_path_buf(), node);
                state.pending.push(DirOp::Add { path: path.to_path_buf(), node });
                state.inodes.len() - 1
            }
            None => return Err(not_found(path)),
        };
        Ok(Box::new(SimFile {
            disk: self.clone(),
            inode,
            generation: state.generation,
            position: 0,
            path: path.to_path_buf(),
        }))
    }
}

impl Disk for SimDisk {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.enter(SimCall::CreateDir)?;
        if state.live.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{}", path.display())));
        }
        if !state.is_dir(parent(path)) {
            return Err(not_found(parent(path)));
        }
        state.live.insert(path.to_path_buf(), Node::Dir);
        state.pending.push(DirOp::Add { path: path.to_path_buf(), node: Node::Dir });
        Ok(())
    }

    fn is_dir(&self, path: &Path) -> bool {
        let state = self.lock();
        let alive = self.process.is_none_or(|generation| generation == state.generation);
        alive && state.powered && state.is_dir(path)
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<DiskEntry>> {
        let state = self.enter(SimCall::ReadDir)?;
        if !state.is_dir(dir) {
            return Err(not_found(dir));
        }
        Ok(state
            .live
            .iter()
            .filter(|(path, _)| path.parent() == Some(dir))
            .map(|(path, node)| DiskEntry {
                name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                path: path.clone(),
                is_dir: *node == Node::Dir,
            })
            .collect())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = self.enter(SimCall::Read)?;
        match state.live.get(path) {
            Some(Node::File(inode)) => Ok(state.inodes[*inode].data.clone()),
            Some(Node::Dir) => Err(io::Error::new(io::ErrorKind::IsADirectory, format!("{}", path.display()))),
            None => Err(not_found(path)),
        }
    }

    fn stat(&self, path: &Path) -> io::Result<DiskStat> {
        let state = self.enter(SimCall::Stat)?;
        match state.live.get(path) {
            Some(Node::File(inode)) => {
                let inode = &state.inodes[*inode];
                let modified = inode.modified.unwrap_or(std::time::UNIX_EPOCH);
                Ok(DiskStat { len: inode.data.len() as u64, modified, is_dir: false })
            }
            Some(Node::Dir) => Ok(DiskStat { len: 0, modified: std::time::UNIX_EPOCH, is_dir: true }),
            None => Err(not_found(path)),
        }
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        self.open(path, true)
    }

    fn open_write(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        self.open(path, false)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.enter(SimCall::Rename)?;
        let node = match state.live.get(from) {
            Some(Node::File(inode)) => Node::File(*inode),
            Some(Node::Dir) => return Err(io::Error::other("the simulated disk renames files only")),
            None => return Err(not_found(from)),
        };
        if !state.is_dir(parent(to)) {
            return Err(not_found(parent(to)));
        }
        if state.live.get(to) == Some(&Node::Dir) {
            return Err(io::Error::new(io::ErrorKind::IsADirectory, format!("{}", to.display())));
        }
        state.live.remove(from);
        state.live.insert(to.to_path_buf(), node);
        state.pending.push(DirOp::Rename { from: from.to_path_buf(), to: to.to_path_buf(), node });
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.enter(SimCall::Remove)?;
        match state.live.get(path) {
            Some(Node::File(_)) => {
                state.live.remove(path);
                state.pending.push(DirOp::Remove { path: path.to_path_buf() });
                Ok(())
            }
            Some(Node::Dir) => Err(io::Error::new(io::ErrorKind::IsADirectory, format!("{}", path.display()))),
            None => Err(not_found(path)),
        }
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.enter(SimCall::Remove)?;
        match state.live.get(path) {
            Some(Node::Dir) if state.live.keys().any(|p| p.parent() == Some(path)) => {
                Err(io::Error::new(io::ErrorKind::DirectoryNotEmpty, format!("{}", path.display())))
            }
            Some(Node::Dir) => {
                state.live.remove(path);
                state.pending.push(DirOp::Remove { path: path.to_path_buf() });
                Ok(())
            }
            Some(Node::File(_)) => Err(io::Error::new(io::ErrorKind::NotADirectory, format!("{}", path.display()))),
            None => Err(not_found(path)),
        }
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.enter(SimCall::SyncDir)?;
        if !state.is_dir(dir) {
            return Err(not_found(dir));
        }
        let (now, later): (Vec<DirOp>, Vec<DirOp>) =
            std::mem::take(&mut state.pending).into_iter().partition(|op| op.dir() == dir);
        let mut durable = std::mem::take(&mut state.durable);
        for op in &now {
            op.apply(&mut durable);
        }
        state.durable = durable;
        state.pending = later;
        Ok(())
    }

    fn durable_dirs(&self) -> &Mutex<std::collections::BTreeSet<PathBuf>> {
        &self.durable_dirs
    }

    /// The files under `root`, read through this disk (and failing with
    /// it): queries, merges and layer moves read a simulated layer back.
    fn object_store(&self, root: &Path) -> Result<Arc<dyn object_store::ObjectStore>, String> {
        Ok(Arc::new(super::disk_store::DiskStore::new(Arc::new(self.clone()), root)))
    }
}

/// A file of a [`SimDisk`], open for writing.
#[derive(Debug)]
struct SimFile {
    disk: SimDisk,
    inode: usize,
    generation: u64,
    position: usize,
    path: PathBuf,
}

impl SimFile {
    fn state(&self, call: SimCall) -> io::Result<MutexGuard<'_, SimState>> {
        let state = self.disk.enter(call)?;
        state.check_handle(self.generation).map_err(|e| io::Error::other(format!("{}: {e}", self.path.display())))?;
        Ok(state)
    }
}

impl Write for SimFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let position = self.position;
        let mut state = self.disk.lock();
        let planned = state.enter_planned(SimCall::Write)?;
        state.check_handle(self.generation)?;
        let mut len = buf.len();
        let mut failure = None;
        if let Some(fault) = planned {
            // Nothing, everything, or any part written before the error.
            len = match state.below(3) {
                0 => 0,
                1 => len,
                _ => state.below(len as u64 + 1) as usize,
            };
            failure = Some(fault.error(SimCall::Write));
        }
        if let Some(capacity) = state.capacity {
            let size = state.inodes[self.inode].data.len();
            let room = capacity.saturating_sub(state.used()) as usize;
            if (position + len).saturating_sub(size) > room {
                len = (size + room).saturating_sub(position).min(len);
                failure = Some(SimFault::DiskFull.error(SimCall::Write));
            }
        }
        let end = position + len;
        let inode = &mut state.inodes[self.inode];
        if inode.data.len() < end {
            inode.data.resize(end, 0);
        }
        inode.data[position..end].copy_from_slice(&buf[..len]);
        inode.modified = Some(std::time::SystemTime::now());
        // The kernel writes dirty pages back when it likes: sometimes now.
        if state.write_back && state.below(8) == 0 {
            let inode = &mut state.inodes[self.inode];
            inode.synced = inode.data.clone();
        }
        drop(state);
        self.position = end;
        match failure {
            Some(error) => Err(error),
            None => Ok(len),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl DiskFile for SimFile {
    fn sync_data(&mut self) -> io::Result<()> {
        let inode = self.inode;
        let mut state = self.state(SimCall::Sync)?;
        let data = state.inodes[inode].data.clone();
        state.inodes[inode].synced = data;
        Ok(())
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.sync_data()
    }

    fn truncate_to(&mut self, len: u64) -> io::Result<()> {
        let inode = self.inode;
        let mut state = self.state(SimCall::Truncate)?;
        let len = usize::try_from(len).map_err(io::Error::other)?;
        state.inodes[inode].data.resize(len, 0);
        state.inodes[inode].modified = Some(std::time::SystemTime::now());
        drop(state);
        self.position = len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_file(disk: &SimDisk, path: &str, bytes: &[u8]) -> Box<dyn DiskFile> {
        let mut file = disk.create(Path::new(path)).expect("create");
        file.write_all(bytes).expect("write");
        file
    }

    #[test]
    fn a_power_cut_keeps_what_was_synced_and_nothing_unsynced_without_tearing() {
        let disk = SimDisk::new(1);
        disk.set_tearing(Tearing::None);
        disk.set_write_back(false);
        disk.create_dir(Path::new("/d")).expect("mkdir");
        disk.sync_dir(Path::new("/")).expect("sync /");
        let mut file = write_file(&disk, "/d/a", b"synced");
        file.sync_data().expect("sync");
        disk.sync_dir(Path::new("/d")).expect("sync /d");
        file.write_all(b" and not").expect("write");
        // Created but its directory never synced: may or may not survive.
        write_file(&disk, "/d/b", b"x").sync_data().expect("sync b");
        disk.power_cut();
        assert!(file.write_all(b"late").is_err(), "a handle from before the cut must be dead");
        assert!(disk.read(Path::new("/d/a")).is_err(), "the disk is off");
        disk.restart();
        assert_eq!(disk.read(Path::new("/d/a")).expect("read"), b"synced");
    }

    #[test]
    fn unsynced_directory_operations_survive_in_any_subset() {
        let mut outcomes = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let disk = SimDisk::new(seed);
            disk.set_tearing(Tearing::None);
            let mut a = write_file(&disk, "/a", b"a");
            a.sync_all().expect("sync");
            let mut b = write_file(&disk, "/b", b"b");
            b.sync_all().expect("sync");
            disk.power_cut();
            disk.restart();
            let names: Vec<String> =
                disk.read_dir(Path::new("/")).expect("ls").into_iter().map(|entry| entry.name).collect();
            outcomes.insert(names.join(","));
        }
        let expected: std::collections::BTreeSet<String> =
            ["", "a", "b", "a,b"].iter().map(|s| s.to_string()).collect();
        assert_eq!(outcomes, expected);
    }

    #[test]
    fn a_rename_without_a_directory_sync_may_be_lost_and_with_one_is_kept() {
        let mut lost = 0;
        for seed in 0..32 {
            let disk = SimDisk::new(seed);
            let mut file = write_file(&disk, "/tmp-x", b"new");
            file.sync_all().expect("sync");
            disk.sync_dir(Path::new("/")).expect("sync /");
            disk.rename(Path::new("/tmp-x"), Path::new("/x")).expect("rename");
            disk.power_cut();
            disk.restart();
            match disk.read(Path::new("/x")) {
                Ok(bytes) => assert_eq!(bytes, b"new"),
                Err(_) => {
                    lost += 1;
                    assert_eq!(disk.read(Path::new("/tmp-x")).expect("the old name"), b"new");
                }
            }
        }
        assert!(lost > 0, "some seeds must lose an unsynced rename");
        let disk = SimDisk::new(7);
        let mut file = write_file(&disk, "/t", b"v");
        file.sync_all().expect("sync");
        disk.rename(Path::new("/t"), Path::new("/v")).expect("rename");
        disk.sync_dir(Path::new("/")).expect("sync /");
        disk.power_cut();
        disk.restart();
        assert_eq!(disk.read(Path::new("/v")).expect("kept"), b"v");
    }

    #[test]
    fn torn_tails_are_prefixes_and_pages_may_come_back_as_zeros() {
        let mut lengths = std::collections::BTreeSet::new();
        for seed in 0..32 {
            let disk = SimDisk::new(seed);
            let mut file = write_file(&disk, "/f", b"0123");
            file.sync_data().expect("sync");
            disk.sync_dir(Path::new("/")).expect("sync /");
            file.write_all(b"456789").expect("write");
            disk.power_cut();
            disk.restart();
            let bytes = disk.read(Path::new("/f")).expect("read");
            assert!(b"0123456789".starts_with(&bytes) && bytes.len() >= 4, "{bytes:?}");
            lengths.insert(bytes.len());
        }
        assert!(lengths.len() > 3, "tears land at many places: {lengths:?}");

        let mut zeroed = false;
        for seed in 0..32 {
            let disk = SimDisk::new(seed);
            disk.set_tearing(Tearing::Pages);
            let mut file = write_file(&disk, "/f", &[7u8; 100]);
            file.sync_data().expect("sync");
            disk.sync_dir(Path::new("/")).expect("sync /");
            file.write_all(&[9u8; 3 * PAGE]).expect("write");
            disk.power_cut();
            disk.restart();
            let bytes = disk.read(Path::new("/f")).expect("read");
            assert!(bytes[..100].iter().all(|b| *b == 7));
            assert!(bytes[100..].iter().all(|b| *b == 9 || *b == 0));
            zeroed |= bytes[100..].contains(&0) && bytes[100..].contains(&9);
        }
        assert!(zeroed, "some seeds must lose pages in the middle of the unsynced tail");
    }

    #[test]
    fn a_cut_not_synced_may_be_undone_by_a_power_cut() {
        let mut undone = 0;
        for seed in 0..64 {
            let disk = SimDisk::new(seed);
            disk.set_tearing(Tearing::None);
            let mut file = write_file(&disk, "/f", b"kept");
            file.sync_all().expect("sync");
            disk.sync_dir(Path::new("/")).expect("sync /");
            file.write_all(b" refused").expect("write");
            file.truncate_to(4).expect("cut");
            disk.power_cut();
            disk.restart();
            let bytes = disk.read(Path::new("/f")).expect("read");
            assert!(bytes == b"kept" || bytes == b"kept refused", "{bytes:?}");
            undone += usize::from(bytes == b"kept refused");
        }
        assert!(undone > 0, "a write-back before the cut must sometimes bring the bytes back");
    }

    #[test]
    fn planned_faults_and_a_full_disk_fail_the_chosen_calls() {
        let disk = SimDisk::new(3);
        let mut file = write_file(&disk, "/f", b"a");
        disk.fail_call(SimCall::Sync, 1, SimFault::Io);
        file.sync_data().expect("the first sync goes through");
        assert!(file.sync_data().is_err(), "the second fails");
        file.sync_data().expect("the fault fires once");

        disk.set_capacity(Some(4));
        file.write_all(b"bc").expect("within the capacity");
        let full = file.write_all(b"de").expect_err("past it");
        assert!(crate::storage::disk::is_disk_full(&full), "{full}");
        assert_eq!(disk.read(Path::new("/f")).expect("read"), b"abcd", "a write past the capacity writes what fits");
        disk.set_capacity(None);
        file.write_all(b"e").expect("room again");
    }

    #[test]
    fn a_process_makes_no_call_after_the_power_cut_it_died_in() {
        let disk = SimDisk::new(9);
        let old = disk.process();
        write_file(&old, "/a", b"a").sync_all().expect("the old process writes");
        disk.power_cut();
        disk.restart();
        assert!(old.create(Path::new("/b")).is_err(), "a dead process must not create files");
        assert!(old.sync_dir(Path::new("/")).is_err());
        assert!(!old.is_dir(Path::new("/")));
        let new = disk.process();
        write_file(&new, "/c", b"c").sync_all().expect("the new process writes");
    }

    #[test]
    fn the_power_goes_out_at_the_planned_call() {
        let disk = SimDisk::new(5);
        disk.set_write_back(false);
        disk.power_cut_at(3);
        let mut file = write_file(&disk, "/f", b"a"); // calls 1 and 2
        assert!(file.sync_data().is_err(), "call 3 meets the power cut");
        assert!(!disk.is_powered());
        disk.restart();
        // Its entry and data were never synced: gone, or there and empty.
        assert!(disk.read(Path::new("/f")).map_or(true, |bytes| bytes.is_empty()));
    }
}
