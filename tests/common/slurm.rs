//! A real single-node Slurm cluster for tests: a private `munged`, `slurmctld` and `slurmd` on
//! 127.0.0.1, each a foreground child of the test process, with all their state in a throwaway
//! directory. Jobs run as the test's user (root: the cluster needs it).
//!
//! Every [`SlurmCluster`] is its own cluster: its own munge key and socket (never the system's
//! `/run/munge`, which another test or a system munged may own), its own free TCP ports and its own
//! `slurm.conf`, so clusters on one machine never meet. The configuration reaches only the
//! commands given to [`SlurmCluster::env`] (through `SLURM_CONF`), never this process.
//!
//! Needs `slurm-wlm` and `munge` (Debian). Without root or without them, [`SlurmCluster::start`]
//! returns None after printing why, unless `CI` is set: CI must run these tests, so there it panics.
//!
//! The daemons run in the foreground (`-D`, `-F`) because PID 1 on some machines does not reap
//! orphans: a daemonised process would linger as a zombie that `kill -0` still finds. Job steps
//! (`slurmstepd`) are still reparented to PID 1 and may linger as zombies there; they hold nothing.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the daemons get until `sinfo` reports the node idle.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long each daemon gets to exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The node's memory as the cluster sees it (MiB): modest, so slurmd never finds less and drains.
const REAL_MEMORY_MIB: u64 = 1024;
/// The daemons and clients the cluster needs.
const BINARIES: [&str; 9] = [
    "munged",
    "munge",
    "slurmctld",
    "slurmd",
    "sinfo",
    "sbatch",
    "squeue",
    "scontrol",
    "scancel",
];

/// One array task's end, from `scontrol show job`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    /// The array index (`SLURM_ARRAY_TASK_ID`).
    pub task_id: u32,
    /// The task's own job id.
    pub job_id: u32,
    /// `COMPLETED`, `FAILED`, `CANCELLED`, `TIMEOUT`, ...
    pub state: String,
    /// The exit status of the batch script (0 to 255).
    pub exit_code: i32,
    /// The signal that ended it, 0 if none.
    pub signal: i32,
}

impl TaskState {
    /// Completed with exit status 0.
    pub fn ok(&self) -> bool {
        self.state == "COMPLETED" && self.exit_code == 0 && self.signal == 0
    }
}

/// A running private Slurm cluster: one node `localhost` in partition `debug` (stopped on drop,
/// after cancelling every job submitted through it).
pub struct SlurmCluster {
    dir: tempfile::TempDir,
    cpus: u32,
    /// ` Boards=.. SocketsPerBoard=.. CoresPerSocket=.. ThreadsPerCore=..`, or empty.
    layout: String,
    /// munged, slurmctld, slurmd, in start order.
    daemons: Mutex<Vec<(&'static str, Child)>>,
    /// Every job submitted through [`SlurmCluster::sbatch_array`], cancelled on drop.
    jobs: Mutex<Vec<u32>>,
}

impl SlurmCluster {
    /// Starts a cluster and waits until its node is idle; None, after printing
    /// `skipping: ...`, where it cannot run (not root, or Slurm or munge not installed) and `CI`
    /// is not set. Under CI that panics instead, as does any failure to start (with the logs).
    pub fn start() -> Option<SlurmCluster> {
        if let Err(why) = can_run() {
            super::prerequisite_missing(&format!("the Slurm test cluster cannot start: {why}"));
            return None;
        }
        Some(Self::start_cluster())
    }

    fn start_cluster() -> SlurmCluster {
        let dir = tempfile::Builder::new()
            .prefix("vslurm-")
            .tempdir_in(short_tmp())
            .expect("cannot create a state directory for Slurm");
        // munged refuses a socket below a directory that others cannot traverse.
        set_mode(dir.path(), 0o755);
        for sub in ["munge", "state", "spool", "log"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let (cpus, layout) = machine_cpus();
        let cluster = SlurmCluster {
            dir,
            cpus,
            layout,
            daemons: Mutex::new(Vec::new()),
            jobs: Mutex::new(Vec::new()),
        };
        let started = Instant::now();
        cluster.write_munge_key();
        // In the foreground munged logs to stderr, i.e. to log/munged.out.
        cluster.spawn(
            "munged",
            Command::new(bin("munged"))
                .arg("--foreground")
                .arg(format!("--socket={}", cluster.munge_socket().display()))
                .arg(format!("--key-file={}", cluster.munge_key().display()))
                .arg(format!(
                    "--pid-file={}",
                    cluster.path("munge/munged.pid").display()
                ))
                .arg(format!(
                    "--seed-file={}",
                    cluster.path("munge/munged.seed").display()
                )),
        );
        cluster.wait_for("munged to answer", || {
            cluster.munge_socket().exists()
                && Command::new(bin("munge"))
                    .arg("-n")
                    .arg(format!("--socket={}", cluster.munge_socket().display()))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
        });
        cluster.write_conf();
        let conf = cluster.conf();
        cluster.spawn(
            "slurmctld",
            Command::new(bin("slurmctld"))
                .arg("-D")
                .arg("-f")
                .arg(&conf),
        );
        cluster.spawn(
            "slurmd",
            Command::new(bin("slurmd"))
                .arg("-D")
                .arg("-f")
                .arg(&conf)
                // The node is `localhost` whatever `hostname` says.
                .args(["-N", "localhost"]),
        );
        cluster.wait_for("sinfo to report the node idle", || {
            let out = cluster.client("sinfo").args(["-h", "-o", "%T"]).output();
            out.is_ok_and(|o| {
                o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "idle"
            })
        });
        eprintln!(
            "slurm: cluster up in {:.1} s ({} CPUs, state in {})",
            started.elapsed().as_secs_f64(),
            cpus,
            cluster.dir().display()
        );
        cluster
    }

    /// The state directory (configuration, logs, spool).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir().join(rel)
    }

    /// `slurm.conf`: what `SLURM_CONF` names.
    pub fn conf(&self) -> PathBuf {
        self.path("slurm.conf")
    }

    fn munge_socket(&self) -> PathBuf {
        self.path("munge/munge.socket")
    }

    fn munge_key(&self) -> PathBuf {
        self.path("munge/munge.key")
    }

    /// The node's CPUs as configured (the machine's).
    pub fn cpus(&self) -> u32 {
        self.cpus
    }

    /// Points `cmd` at this cluster: `SLURM_CONF`, and none of the `SLURM_*`/`SBATCH_*`/... of an
    /// enclosing job (a developer may run the tests inside one), which would leak into its jobs.
    pub fn env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if ["SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_", "SINFO_"]
                .iter()
                .any(|p| key.starts_with(p))
            {
                cmd.env_remove(key.as_ref());
            }
        }
        cmd.env("SLURM_CONF", self.conf())
    }

    /// A Slurm client (`sinfo`, `squeue`, ...) pointed at this cluster.
    pub fn client(&self, program: &str) -> Command {
        let mut cmd = Command::new(bin(program));
        cmd.stdin(Stdio::null());
        self.env(&mut cmd);
        cmd
    }

    /// Submits `script` as a job array (`--array=ARRAY_SPEC`) with stdout and stderr of each task
    /// to `output_pattern` (`%A` array job id, `%a` task index), and `env` added to the
    /// submitting environment (sbatch exports it all to the tasks). Returns the array's job id.
    pub fn sbatch_array(
        &self,
        script: &Path,
        array_spec: &str,
        output_pattern: &Path,
        env: &[(&str, &OsStr)],
    ) -> u32 {
        let mut cmd = self.sbatch(array_spec, output_pattern);
        for (key, value) in env {
            cmd.env(key, value);
        }
        self.submit(&mut cmd, script)
    }

    /// `sbatch --parsable --array=ARRAY_SPEC --output=OUTPUT_PATTERN` pointed at this cluster, for
    /// callers that add options (which, like these, override the script's `#SBATCH` lines) or
    /// change the environment before [`SlurmCluster::submit`].
    pub fn sbatch(&self, array_spec: &str, output_pattern: &Path) -> Command {
        let mut cmd = self.client("sbatch");
        cmd.arg("--parsable")
            .arg(format!("--array={array_spec}"))
            .arg(format!("--output={}", output_pattern.display()));
        cmd
    }

    /// Runs `cmd` (from [`SlurmCluster::sbatch`]) on `script` and returns the job id.
    pub fn submit(&self, cmd: &mut Command, script: &Path) -> u32 {
        let out = cmd.arg(script).output().expect("cannot run sbatch");
        if !out.status.success() {
            self.fail(&format!(
                "sbatch {} failed ({}): {}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        // `--parsable` prints `JOBID` or `JOBID;CLUSTER`.
        let stdout = String::from_utf8_lossy(&out.stdout);
        let jid: u32 = stdout
            .trim()
            .split(';')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| self.fail(&format!("sbatch printed no job id: {stdout:?}")));
        self.jobs.lock().unwrap().push(jid);
        jid
    }

    /// Waits until job `jid` (an array: every task) has left the queue, then returns each task's
    /// end state, sorted by task index. Panics, with the job and the daemon logs, after `timeout`.
    pub fn wait_job(&self, jid: u32, timeout: Duration) -> Vec<TaskState> {
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            let out = self
                .client("squeue")
                .args(["-h", "-o", "%i %T", "-j", &jid.to_string()])
                .output()
                .expect("cannot run squeue");
            if !out.status.success() {
                self.fail(&format!(
                    "squeue -j {jid} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            let queued = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if queued.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "job {jid} still queued after {} s:\n{queued}\n--- scontrol show job ---\n{}",
                    timeout.as_secs(),
                    self.show_job(jid)
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let shown = self.show_job(jid);
        let mut tasks: Vec<TaskState> = shown
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let parse = || -> Option<TaskState> {
                    let (exit_code, signal) = field(line, "ExitCode")?.split_once(':')?;
                    Some(TaskState {
                        task_id: field(line, "ArrayTaskId")?.parse().ok()?,
                        job_id: field(line, "JobId")?.parse().ok()?,
                        state: field(line, "JobState")?.to_string(),
                        exit_code: exit_code.parse().ok()?,
                        signal: signal.parse().ok()?,
                    })
                };
                parse().unwrap_or_else(|| {
                    self.fail(&format!("cannot read a task of job {jid} from: {line}"))
                })
            })
            .collect();
        tasks.sort_by_key(|t| t.task_id);
        eprintln!(
            "slurm: job {jid} done after {:.1} s: {}",
            started.elapsed().as_secs_f64(),
            tasks
                .iter()
                .map(|t| format!("{}={}({}:{})", t.task_id, t.state, t.exit_code, t.signal))
                .collect::<Vec<_>>()
                .join(" ")
        );
        tasks
    }

    /// `scontrol -o show job JID`: one line per array task (kept MinJobAge = 300 s after the end).
    pub fn show_job(&self, jid: u32) -> String {
        let out = self
            .client("scontrol")
            .args(["-o", "show", "job", &jid.to_string()])
            .output()
            .expect("cannot run scontrol");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Everything the daemons wrote (their logs and their stdout/stderr), for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for name in [
            "munged.out",
            "slurmctld.log",
            "slurmctld.out",
            "slurmd.log",
            "slurmd.out",
        ] {
            let body = std::fs::read_to_string(self.path(&format!("log/{name}")))
                .unwrap_or_else(|e| format!("({e})"));
            let _ = write!(text, "--- {name} ---\n{}\n", tail(&body, 60));
        }
        text
    }

    /// Stops the cluster and panics with what it logged.
    fn fail(&self, what: &str) -> ! {
        let logs = self.logs();
        self.stop();
        panic!(
            "Slurm test cluster{}: {what}\n{logs}",
            if super::under_ci() { " (CI)" } else { "" },
        );
    }

    /// A fresh 1 KiB key, the test's own (0600, owned by the test's user, as munged checks).
    fn write_munge_key(&self) {
        use std::io::Read as _;
        let mut key = vec![0u8; 1024];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut key))
            .expect("cannot read /dev/urandom for the munge key");
        std::fs::write(self.munge_key(), key).unwrap();
        set_mode(&self.munge_key(), 0o600);
    }

    /// The smallest configuration that runs batch jobs without cgroups, accounting or systemd
    /// (see ../shared/recipes/slurm-single-node.md), on free ports and the private munge socket.
    fn write_conf(&self) {
        let d = self.dir().display();
        let (ctld_port, slurmd_port) = free_ports();
        let conf = format!(
            "\
ClusterName=verbatimtest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={socket}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus}{layout} RealMemory={REAL_MEMORY_MIB} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
",
            socket = self.munge_socket().display(),
            cpus = self.cpus,
            layout = self.layout,
        );
        std::fs::write(self.conf(), conf).unwrap();
    }

    /// Starts a daemon in the foreground, stdout and stderr to `log/NAME.out`.
    fn spawn(&self, name: &'static str, cmd: &mut Command) {
        let out = std::fs::File::create(self.path(&format!("log/{name}.out"))).unwrap();
        self.env(cmd)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        match cmd.spawn() {
            Ok(child) => self.daemons.lock().unwrap().push((name, child)),
            Err(e) => self.fail(&format!("cannot start {name}: {e}")),
        }
    }

    /// Polls `ready` until it holds; fails when a daemon exits or after START_TIMEOUT.
    fn wait_for(&self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ready() {
                return;
            }
            let exited: Vec<String> = self
                .daemons
                .lock()
                .unwrap()
                .iter_mut()
                .filter_map(|(name, child)| {
                    child
                        .try_wait()
                        .ok()
                        .flatten()
                        .map(|status| format!("{name} exited ({status})"))
                })
                .collect();
            if !exited.is_empty() {
                self.fail(&format!("waiting for {what}: {}", exited.join(", ")));
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "waiting for {what}: not within {} s",
                    START_TIMEOUT.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Cancels this cluster's jobs, then stops slurmd, slurmctld and munged (SIGTERM, then SIGKILL
    /// after STOP_TIMEOUT) and reaps them. Idempotent.
    fn stop(&self) {
        let mut daemons = self.daemons.lock().unwrap();
        if daemons.is_empty() {
            return;
        }
        let jobs = std::mem::take(&mut *self.jobs.lock().unwrap());
        let ctld_up = daemons
            .iter_mut()
            .any(|(name, c)| *name == "slurmctld" && matches!(c.try_wait(), Ok(None)));
        if !jobs.is_empty() && ctld_up {
            let ids: Vec<String> = jobs.iter().map(u32::to_string).collect();
            let _ = self
                .client("scancel")
                .args(&ids)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            // Let slurmd kill the tasks before it goes itself.
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                let out = self
                    .client("squeue")
                    .args(["-h", "-j", &ids.join(",")])
                    .stderr(Stdio::null())
                    .output();
                match out {
                    Ok(o) if o.status.success() && !o.stdout.is_empty() => {
                        std::thread::sleep(Duration::from_millis(200))
                    }
                    _ => break,
                }
            }
        }
        // slurmd first, munged last: the others talk to munged while they shut down.
        while let Some((_, mut child)) = daemons.pop() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + STOP_TIMEOUT;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for SlurmCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Ok when this process can run a cluster: root, with the daemons and clients on PATH.
fn can_run() -> Result<(), String> {
    let missing: Vec<&str> = BINARIES
        .iter()
        .copied()
        .filter(|b| which(b).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "Slurm/munge not installed (missing {}): apt-get install slurm-wlm munge",
            missing.join(", ")
        ));
    }
    if !is_root() {
        return Err("the Slurm test cluster needs root (SlurmUser=root)".to_string());
    }
    Ok(())
}

fn is_root() -> bool {
    // The effective uid, without a libc dependency.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// A program on PATH, or in the sbin directories (PATH may lack them).
fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// A program by its full path where [`which`] finds it (so sbin need not be on PATH).
fn bin(program: &str) -> PathBuf {
    which(program).unwrap_or_else(|| PathBuf::from(program))
}

/// The machine's CPUs and their layout as slurmd finds them (`slurmd -C`), else the available
/// parallelism. Configuring more than slurmd finds would drain the node; a layout unlike the
/// hardware's only earns a log line.
fn machine_cpus() -> (u32, String) {
    let found = Command::new(bin("slurmd"))
        .arg("-C")
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o: Output| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let cpus = field(&text, "CPUs")?.parse().ok()?;
            let layout = [
                "Boards",
                "SocketsPerBoard",
                "CoresPerSocket",
                "ThreadsPerCore",
            ]
            .iter()
            .map(|key| Some(format!(" {key}={}", field(&text, key)?)))
            .collect::<Option<String>>()?;
            Some((cpus, layout))
        });
    found.unwrap_or_else(|| {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        (cpus, String::new())
    })
}

/// The value of ` KEY=` in a `scontrol -o` style line (up to the next space).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|token| token.strip_prefix(key)?.strip_prefix('='))
}

/// Two distinct TCP ports free on 127.0.0.1 right now (both held while the second is chosen).
fn free_ports() -> (u16, u16) {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").expect("cannot find a free TCP port");
    let (a, b) = (bind(), bind());
    let port = |l: &std::net::TcpListener| l.local_addr().unwrap().port();
    (port(&a), port(&b))
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The temp directory, or /tmp where that path is long (the munge socket's path must fit in
/// 108 bytes).
fn short_tmp() -> PathBuf {
    let base = std::env::temp_dir();
    if base.as_os_str().len() > 60 {
        PathBuf::from("/tmp")
    } else {
        base
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
