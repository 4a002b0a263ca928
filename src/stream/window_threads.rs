//! Window threads: extra threads that each own a copy of the model and run the MFAI batches an
//! engine hands them, so that the windows one engine has due at once (a replay catching up,
//! several streams due on the same frame) run on more than one core.
//!
//! Why not libtorch's own intra-op threads: one window's matrices (64 channels × 256 frames) are
//! too small to split, and OpenMP threads spin-wait on the core the sources and the segmenter
//! need; with two intra-op threads a pipeline replay ran at half the speed of one
//! (BENCHMARKS.md, "Threads"). A window thread splits the work per batch of windows instead,
//! and sleeps on its channel when there is none.
//!
//! The threads are named `<owner>/window<k>`, take tasks from a bounded channel and stop when
//! their [`WindowThread`] is dropped (the channel closes; the drop joins the thread).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};
use tch::nn;

use crate::error::{Error, Result};
use crate::model::{InterAct, ModelConfig};
use crate::stream::pipeline::panic_message;

/// Tasks one thread holds before a sender waits: more than an engine step hands out (a step
/// runs at most 256 frames' windows, in batches).
const TASK_CAPACITY: usize = 64;

type Task = Box<dyn FnOnce(&InterAct) + Send>;

/// One window thread: a model copy on its own thread.
#[derive(Debug)]
pub(crate) struct WindowThread {
    name: String,
    tasks: Option<Sender<Task>>,
    handle: Option<JoinHandle<()>>,
    /// Tasks run so far (tests check that a helper was used).
    #[cfg(test)]
    done: Arc<AtomicU64>,
}

impl WindowThread {
    /// Starts thread `name` with `model` (built on `vs`, which the thread keeps alive) and
    /// `intra_op` libtorch threads.
    pub(crate) fn spawn(
        name: String,
        vs: nn::VarStore,
        model: InterAct,
        intra_op: i32,
    ) -> Result<Self> {
        let (tx, rx) = bounded::<Task>(TASK_CAPACITY);
        let done = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&done);
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                // Both are per thread in libtorch: the caller's settings do not carry over.
                tch::set_num_threads(intra_op);
                let _no_grad = tch::no_grad_guard();
                let _keep_alive = vs;
                for task in rx {
                    task(&model);
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
            .map_err(|source| Error::SpawnThread { name: name.clone(), source })?;
        Ok(WindowThread {
            name,
            tasks: Some(tx),
            handle: Some(handle),
            #[cfg(test)]
            done,
        })
    }

    /// Tasks this thread has run.
    #[cfg(test)]
    pub(crate) fn tasks_done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Runs `f` on this thread's model; its result (or the panic it raised, as an error)
    /// arrives on the returned receiver.
    pub(crate) fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&InterAct) -> Result<R> + Send + 'static,
    ) -> Result<Receiver<Result<R>>> {
        let (tx, rx) = bounded(1);
        let name = self.name.clone();
        let task: Task = Box::new(move |model| {
            let result = catch_unwind(AssertUnwindSafe(|| f(model))).unwrap_or_else(|panic| {
                Err(Error::ThreadFailed { name, message: panic_message(&*panic) })
            });
            // The caller may have given up on the answer (an earlier task failed).
            let _ = tx.send(result);
        });
        self.tasks.as_ref().and_then(|tasks| tasks.send(task).ok()).ok_or_else(|| self.gone())?;
        Ok(rx)
    }

    /// Waits for the answer of a task [`WindowThread::run`] handed out.
    pub(crate) fn wait<R>(&self, rx: &Receiver<Result<R>>) -> Result<R> {
        rx.recv().map_err(|_| self.gone())?
    }

    fn gone(&self) -> Error {
        Error::ThreadFailed { name: self.name.clone(), message: "the thread has stopped".into() }
    }
}

impl Drop for WindowThread {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop once the queued tasks are done.
        drop(self.tasks.take());
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// Copies of `vs`'s model for `n` window threads named `<owner>/window1..=n`, each with
/// `intra_op` libtorch threads.
pub(crate) fn spawn_copies(
    owner: &str,
    vs: &nn::VarStore,
    model: &InterAct,
    n: usize,
    intra_op: i32,
) -> Result<Vec<WindowThread>> {
    (1..=n)
        .map(|k| {
            let (vs, copy) = replicate(vs, model.config())?;
            WindowThread::spawn(format!("{owner}/window{k}"), vs, copy, intra_op)
        })
        .collect()
}

/// A copy of the model on `src` (configuration `cfg`) with its own variables: tensors are not
/// `Sync`, so each thread that runs a model needs its own.
pub(crate) fn replicate(src: &nn::VarStore, cfg: &ModelConfig) -> Result<(nn::VarStore, InterAct)> {
    let mut vs = nn::VarStore::new(src.device());
    let copy = InterAct::new(&vs.root(), cfg)?;
    vs.copy(src)?;
    Ok((vs, copy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::testing::bundled_model;

    fn thread() -> WindowThread {
        let (vs, net, _) = crate::Model::from(bundled_model()).into_parts();
        WindowThread::spawn("test/window1".into(), vs, net, 1).unwrap()
    }

    #[test]
    fn tasks_run_on_the_named_thread_in_order() {
        let t = thread();
        let answers: Vec<_> = (0..5)
            .map(|i| {
                t.run(move |model| {
                    let name = std::thread::current().name().map(str::to_owned);
                    Ok((i, name, model.config().hidden))
                })
                .unwrap()
            })
            .collect();
        for (i, rx) in answers.iter().enumerate() {
            let (j, name, hidden) = t.wait(rx).unwrap();
            assert_eq!((j, name.as_deref()), (i, Some("test/window1")));
            assert!(hidden > 0);
        }
    }

    #[test]
    fn a_panicking_task_is_an_error_and_the_thread_goes_on() {
        let t = thread();
        let rx = t.run(|_| -> Result<()> { panic!("boom") }).unwrap();
        let err = t.wait(&rx).unwrap_err().to_string();
        assert!(err.contains("test/window1") && err.contains("boom"), "{err}");
        let rx = t.run(|_| Ok(7)).unwrap();
        assert_eq!(t.wait(&rx).unwrap(), 7);
    }
}
