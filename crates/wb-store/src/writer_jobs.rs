//! What the company writers of both backends accept and answer.

use time::Date;
use tokio::sync::{mpsc, oneshot};
use wb_core::{EntryDraft, NewAccount};

use crate::model::*;
use crate::StoreError;

#[derive(Clone)]
pub(crate) enum Command {
    CreateAccount(NewAccount),
    Post {
        drafts: Vec<EntryDraft>,
        idempotency: Option<Idempotency>,
    },
    Reverse {
        entry_id: i64,
        date: Date,
        description: Option<String>,
    },
    Replay(Vec<ReplayedRecord>),
    ImportAudit(Vec<StoredAuditEvent>),
    AddFile(NewFile),
    /// An audit event with no change attached (reads, refusals).
    Record(AuditEvent),
    /// A purge under the retention rules (`crate::purge`).
    Purge(crate::purge::PurgePlan),
}

impl Command {
    /// The audit action of this command, also recorded when it fails.
    pub(crate) fn action(&self) -> Action {
        match self {
            Command::CreateAccount(_) => Action::AccountCreate,
            Command::Post { .. } => Action::EntryPost,
            Command::Reverse { .. } => Action::EntryReverse,
            Command::Replay(_) => Action::JournalReplay,
            Command::ImportAudit(_) => Action::AuditImport,
            Command::AddFile(_) => Action::FileUpload,
            Command::Record(_) => Action::AuditRecord,
            Command::Purge(_) => Action::DataPurge,
        }
    }
}

pub(crate) enum Output {
    Account(Account),
    Posted(Posted),
    Entry(Entry),
    Replayed(i64),
    AuditImported(i64),
    File(FileRecord),
    Recorded,
    Purged(Box<crate::purge::PurgeReport>),
}

pub(crate) struct Job {
    pub command: Command,
    pub ctx: WriteContext,
    pub reply: oneshot::Sender<Result<Output, StoreError>>,
}

pub(crate) fn command_of(change: Change) -> Command {
    match change {
        Change::CreateAccount(a) => Command::CreateAccount(a),
        Change::Post(drafts) => Command::Post {
            drafts,
            idempotency: None,
        },
        Change::Replay(records) => Command::Replay(records),
        Change::ImportAudit(events) => Command::ImportAudit(events),
        Change::Reverse {
            entry_id,
            date,
            description,
        } => Command::Reverse {
            entry_id,
            date,
            description,
        },
    }
}

pub(crate) fn applied_of(output: Output) -> Result<Applied, StoreError> {
    match output {
        Output::Account(a) => Ok(Applied::Account(a)),
        Output::Posted(p) => Ok(Applied::Posted(p)),
        Output::Entry(e) => Ok(Applied::Entry(e)),
        Output::Replayed(last_seq) => Ok(Applied::Replayed { last_seq }),
        Output::AuditImported(last_seq) => Ok(Applied::AuditImported { last_seq }),
        Output::File(_) | Output::Recorded | Output::Purged(_) => Err(StoreError::Backend(
            "writer answered with the wrong kind of result".into(),
        )),
    }
}

/// Queues the changes on a company writer in this order, all at once (sent
/// one after another from this one task, so the queue keeps the order), and
/// collects each one's result.
pub(crate) async fn apply_in_order(
    writer: &mpsc::Sender<Job>,
    changes: Vec<(Change, WriteContext)>,
) -> Vec<Result<Applied, StoreError>> {
    let mut answers = Vec::with_capacity(changes.len());
    for (change, ctx) in changes {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            command: command_of(change),
            ctx,
            reply,
        };
        answers.push(writer.send(job).await.ok().map(|()| answer));
    }
    let mut results = Vec::with_capacity(answers.len());
    for answer in answers {
        results.push(match answer {
            Some(answer) => match answer.await {
                Ok(output) => output.and_then(applied_of),
                Err(_) => Err(StoreError::WriterStopped),
            },
            None => Err(StoreError::WriterStopped),
        });
    }
    results
}
