//! What `Fit` writes and runs along the way: the metrics log (CSV and JSON lines, kept in step
//! with a resumed run), early stopping and the best weights.

use striate::prelude::*;
use striate::train::{FitStart, LogFormat};

#[path = "common/temp_dir.rs"]
mod temp_dir;
use temp_dir::TempDir;

network! {
    /// A linear classifier of digits.
    pub struct Digits {
        input: [1, 28, 28],
        flatten,
        fc: linear(10),
    }
}

fn trainer(net: &mut Digits, lr: f32) -> Trainer<'_, Digits> {
    Trainer::new(net, Sgd::new(lr).momentum(0.5))
}

#[test]
fn the_csv_log_has_a_row_per_epoch_and_goes_on_with_a_resumed_run() {
    let (train, valid) = Mnist::builtin()
        .train
        .take(300)
        .split_stratified(0.2, 1)
        .unwrap();
    let dir = TempDir::new("log-csv");
    let log = dir.path().join("metrics.csv");
    let checkpoints = Checkpoints::new(dir.path().join("ck")).keep(5);
    let mut net = Digits::init(0);
    let history = trainer(&mut net, 0.1)
        .fit(
            &train,
            Fit::epochs(3)
                .batch(30)
                .validation(&valid)
                .progress(false)
                .log(&log)
                .checkpoints(checkpoints.clone()),
        )
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "epoch,step,lr,loss,accuracy,val_loss,val_accuracy,seconds,images_per_sec"
    );
    assert_eq!(lines.len(), 4, "{text}");
    for (i, (line, record)) in lines[1..].iter().zip(history.epochs()).enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), 9, "{line}");
        assert_eq!(cells[0], i.to_string());
        assert_eq!(cells[1], record.step.to_string());
        assert_eq!(
            record.step,
            (i as u64 + 1) * train.len().div_ceil(30) as u64
        );
        assert_eq!(cells[3].parse::<f32>().unwrap(), record.train.loss);
        let v = record.validation.as_ref().unwrap();
        assert_eq!(cells[5].parse::<f32>().unwrap(), v.loss);
        assert_eq!(cells[6].parse::<f32>().unwrap(), v.accuracy());
    }

    // A run resumed from epoch 1's checkpoint keeps the first row, and replaces the others
    // with the same values (but the timings).
    let first = Checkpoints::list(checkpoints.dir()).unwrap()[0].clone();
    let mut again = Digits::init(5);
    let mut t = trainer(&mut again, 0.1);
    t.resume(&first).unwrap();
    t.fit(
        &train,
        Fit::until(3)
            .batch(30)
            .validation(&valid)
            .progress(false)
            .log(&log),
    )
    .unwrap();
    let resumed = std::fs::read_to_string(&log).unwrap();
    let resumed: Vec<&str> = resumed.lines().collect();
    assert_eq!(resumed.len(), 4);
    assert_eq!(resumed[..2], lines[..2]);
    let without_times = |line: &str| line.split(',').take(7).collect::<Vec<_>>().join(",");
    for (a, b) in resumed[2..].iter().zip(&lines[2..]) {
        assert_eq!(without_times(a), without_times(b));
    }
}

#[test]
fn the_json_lines_log_has_null_without_validation_and_a_bad_name_is_refused() {
    let data = Mnist::builtin().train.take(100);
    let dir = TempDir::new("log-json");
    let log = dir.path().join("metrics.jsonl");
    let mut net = Digits::init(0);
    let mut t = trainer(&mut net, 0.1);
    t.fit(&data, Fit::epochs(2).batch(25).progress(false).log(&log))
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["epoch"], 1);
    assert_eq!(rows[1]["step"], 8);
    assert!(rows[1]["val_loss"].is_null() && rows[1]["val_accuracy"].is_null());
    assert!(rows[0]["loss"].as_f64().unwrap() > 0.0);
    assert!(
        text.starts_with("{\"epoch\":0,\"step\":4,\"lr\":"),
        "{text}"
    );

    let err = t
        .fit(&data, Fit::epochs(1).log(dir.path().join("metrics.txt")))
        .unwrap_err();
    assert!(err.to_string().contains("found `.txt`"), "{err}");
    assert_eq!(t.epochs_done(), 2, "refused before training");
    // Any name, in a format given.
    let other = dir.path().join("metrics.log");
    t.fit(
        &data,
        Fit::epochs(1)
            .progress(false)
            .log_as(&other, LogFormat::Csv),
    )
    .unwrap();
    assert!(std::fs::read_to_string(&other)
        .unwrap()
        .starts_with("epoch,step,"));
}

/// A log path that is a FIFO is refused before it is read (reading would block until a writer
/// came), and stays a FIFO; the log of a continued run is replaced whole, never truncated
/// in place, so a run killed while it opens its log keeps the old rows.
#[test]
fn a_fifo_log_is_refused_without_blocking_and_a_continued_log_is_replaced_whole() {
    let data = Mnist::builtin().train.take(100);
    let dir = TempDir::new("log-fifo");
    let fifo = dir.path().join("metrics.csv");
    match std::process::Command::new("mkfifo").arg(&fifo).status() {
        Ok(status) if status.success() => {
            let (done, wait) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut net = Digits::init(0);
                let mut t = trainer(&mut net, 0.1);
                let result = t.fit(&data, Fit::epochs(1).progress(false).log(&fifo));
                done.send((result.map(|_| ()), t.epochs_done())).unwrap();
            });
            let (result, epochs) = wait
                .recv_timeout(std::time::Duration::from_secs(30))
                .expect("fit returned instead of blocking on the FIFO");
            let err = result.unwrap_err();
            assert!(err.to_string().contains("regular file"), "{err}");
            assert_eq!(epochs, 0, "refused before training");
        }
        _ => eprintln!("mkfifo is not available: the FIFO case is skipped"),
    }
    // A continued run's log keeps the old rows.
    let data = Mnist::builtin().train.take(100);
    let log = dir.path().join("continued.csv");
    let mut net = Digits::init(0);
    let mut t = trainer(&mut net, 0.1);
    t.fit(&data, Fit::epochs(1).batch(25).progress(false).log(&log))
        .unwrap();
    let before = std::fs::read_to_string(&log).unwrap();
    t.fit(&data, Fit::epochs(1).batch(25).progress(false).log(&log))
        .unwrap();
    let after = std::fs::read_to_string(&log).unwrap();
    assert!(after.starts_with(&before), "{before}\n---\n{after}");
    assert_eq!(after.lines().count(), 3, "{after}");
}

/// A rate of 0 never improves the loss after the first epoch: with patience 2, training
/// stops after epoch 2.
#[test]
fn early_stopping_stops_after_patience_epochs_without_improvement() {
    let data = Mnist::builtin().train.take(100);
    let mut net = Digits::init(0);
    let mut stop = EarlyStopping::new(Metric::TrainLoss).patience(2);
    let history = trainer(&mut net, 0.0)
        .fit(
            &data,
            Fit::epochs(10)
                .batch(25)
                .progress(false)
                .callback(&mut stop),
        )
        .unwrap();
    assert_eq!(history.epochs().len(), 3);
    assert_eq!(history.stopped_early(), Some(2));
    assert_eq!(stop.stopped_epoch(), Some(2));
    assert_eq!(stop.best().unwrap().1, 0);
}

#[test]
fn callbacks_that_need_a_validation_set_are_refused_before_training() {
    let data = Mnist::builtin().train.take(100);
    let mut net = Digits::init(0);
    let before = net.params().as_slice().to_vec();
    let mut t = trainer(&mut net, 0.1);
    let err = t
        .fit(
            &data,
            Fit::epochs(3).callback(EarlyStopping::new(Metric::ValidationAccuracy)),
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("watches the validation accuracy, but fit has no validation set"),
        "{err}"
    );
    let err = t
        .fit(
            &data,
            Fit::epochs(3).callback(EarlyStopping::new(Metric::TrainLoss).min_delta(-1.0)),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Config {
                name: "min_delta",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(t.net().params().as_slice(), &before[..]);
}

/// Records every epoch's parameters, to check what `SaveBest` kept.
struct Snapshots(Vec<Vec<f32>>, Option<FitStart>);

impl Callback for Snapshots {
    fn on_fit_start(&mut self, start: &FitStart) -> striate::Result<()> {
        self.1 = Some(*start);
        Ok(())
    }
    fn on_epoch_end(&mut self, end: &EpochEnd<'_>) -> striate::Result<Control> {
        assert_eq!(end.network(), "Digits");
        self.0.push(end.params().as_slice().to_vec());
        Ok(Control::Continue)
    }
}

#[test]
fn save_best_keeps_the_weights_of_the_best_epoch() {
    let (train, valid) = Mnist::builtin()
        .train
        .take(300)
        .split_stratified(0.2, 2)
        .unwrap();
    let dir = TempDir::new("save-best");
    let best = dir.path().join("best.safetensors");
    let mut save = SaveBest::new(&best, Metric::ValidationAccuracy);
    let mut snapshots = Snapshots(Vec::new(), None);
    let mut net = Digits::init(0);
    // A large rate, so that the accuracy goes up and down.
    let history = trainer(&mut net, 2.0)
        .fit(
            &train,
            Fit::epochs(6)
                .batch(20)
                .validation(&valid)
                .progress(false)
                .callback(&mut save)
                .callback(&mut snapshots),
        )
        .unwrap();
    let accuracies = history.validation_accuracies();
    let (value, epoch) = save.best().unwrap();
    let top = accuracies.iter().copied().fold(f32::MIN, f32::max);
    assert_eq!(value, top);
    assert_eq!(accuracies.iter().position(|&a| a == top), Some(epoch));
    let mut loaded = Digits::init(9);
    loaded.load(&best).unwrap();
    assert_eq!(loaded.params().as_slice(), &snapshots.0[epoch][..]);
    assert_eq!(snapshots.1.unwrap().end_epoch, 6);
}

/// `docs/src/training.md`: early stopping and the best weights.
#[rustfmt::skip]
#[test]
fn book_example_callbacks() -> striate::Result<()> {
    let (train, valid) = Mnist::builtin().train.take(600).split_stratified(0.2, 1)?;
    let best = std::env::temp_dir().join(format!("striate-doc-best-{}.safetensors", std::process::id()));
    let mut stop = EarlyStopping::new(Metric::ValidationLoss).patience(2).min_delta(1e-3);
    let mut net = Digits::init(0);
    let mut trainer = Trainer::new(&mut net, Sgd::new(0.5));
    let options = Fit::epochs(40)
        .validation(&valid)
        .callback(&mut stop)
        .callback(SaveBest::new(&best, Metric::ValidationLoss));
    let history = trainer.fit(&train, options)?;
    let (loss, epoch) = stop.best().unwrap();
    assert_eq!(history.epochs()[epoch].validation.as_ref().unwrap().loss, loss);
    std::fs::remove_file(&best).unwrap();
    Ok(())
}

network! {
    /// The classifier of the book's resume example.
    struct Classifier { input: [1, 4, 4], flatten, fc: linear(2) }
}

/// `docs/src/training.md`: resuming from a checkpoint.
#[rustfmt::skip]
#[test]
fn book_example_resume() -> striate::Result<()> {
    let images: Vec<f32> = (0..128).map(|i| if (i / 16) % 2 == 0 { 0.0 } else { 1.0 }).collect();
    let data = Dataset::new(images, vec![0, 1, 0, 1, 0, 1, 0, 1], [1, 4, 4], 2)?;
    let dir = TempDir::new("book-resume");
    let mut net = Classifier::init(0);
    let options = Fit::epochs(4).batch(2).progress(false).checkpoints(Checkpoints::new(dir.path()).keep(2));
    Trainer::new(&mut net, Adam::new(0.01)).fit(&data, options)?;
    let files = Checkpoints::list(dir.path())?;

    let mut resumed = Classifier::init(7);
    let mut trainer = Trainer::new(&mut resumed, Adam::new(0.01));
    let from = trainer.resume(&files[0])?;
    assert_eq!((from.epochs_done, from.steps_done), (3, 12));
    trainer.fit(&data, Fit::until(4).batch(2))?;
    assert_eq!(resumed.params().as_slice(), net.params().as_slice());
    Ok(())
}
