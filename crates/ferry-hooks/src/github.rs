//! GitHub webhooks: the `X-Hub-Signature-256` check, the `push` and `ping` payloads, and
//! whether a push should start a run.
//!
//! The order a server follows: [`verify_signature`] on the raw body first (a delivery
//! that fails it is answered 401 and never parsed), then [`parse_github`] with the
//! `X-GitHub-Event` header, then [`Push::decision`] with the branch `ferry.yml` watches.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::HookError;
use crate::json::{self, Obj};

/// Number of hex digits in an HMAC-SHA256.
const SIGNATURE_HEX_LEN: usize = 64;

/// Checks GitHub's `X-Hub-Signature-256` header (`sha256=` and the lowercase hex
/// HMAC-SHA256 of the raw body under the webhook secret) against `body`.
///
/// `header` is the header's value, `None` when the request has none. The comparison is
/// constant-time (`hmac`'s `verify_slice`). Each way of failing is its own error —
/// [`HookError::MissingSignature`], [`HookError::SignaturePrefix`],
/// [`HookError::SignatureNotHex`], [`HookError::SignatureLength`],
/// [`HookError::SignatureMismatch`] — all with [`HookError::is_authentication`], and none
/// of their messages contains the secret or the expected signature. An empty `secret` is
/// refused with [`HookError::EmptySecret`] whatever the header says.
///
/// ```
/// # use ferry_hooks::{verify_signature, HookError};
/// // The example in GitHub's "Validating webhook deliveries" documentation.
/// let secret = b"It's a Secret to Everybody";
/// let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
/// assert_eq!(verify_signature(secret, b"Hello, World!", Some(header)), Ok(()));
/// assert_eq!(
///     verify_signature(secret, b"Hello, World?", Some(header)),
///     Err(HookError::SignatureMismatch)
/// );
/// ```
pub fn verify_signature(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), HookError> {
    if secret.is_empty() {
        return Err(HookError::EmptySecret);
    }
    let header = header.ok_or(HookError::MissingSignature)?.trim();
    let Some(digits) = header.strip_prefix("sha256=") else {
        return Err(HookError::SignaturePrefix {
            found: signature_start(header),
        });
    };
    if let Some((index, character)) = digits
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii_hexdigit())
    {
        return Err(HookError::SignatureNotHex {
            position: index + 1,
            character: character.escape_default().to_string(),
        });
    }
    if digits.len() != SIGNATURE_HEX_LEN {
        return Err(HookError::SignatureLength {
            found: digits.len(),
        });
    }
    let mut expected = [0u8; SIGNATURE_HEX_LEN / 2];
    hex::decode_to_slice(digits, &mut expected).map_err(|_| HookError::SignatureLength {
        found: digits.len(),
    })?;
    // HMAC takes keys of any length, so this never fails; refuse rather than panic.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).map_err(|_| HookError::EmptySecret)?;
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| HookError::SignatureMismatch)
}

/// The start of a header value for an error message: at most 16 characters, escaped.
fn signature_start(header: &str) -> String {
    const MAX: usize = 16;
    let mut shown: String = header
        .chars()
        .take(MAX)
        .flat_map(char::escape_default)
        .collect();
    if header.chars().nth(MAX).is_some() {
        shown.push('…');
    }
    shown
}

/// One parsed GitHub webhook delivery.
// One value per request, matched right away: boxing `Push` would only make matching
// clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GithubEvent {
    /// The `ping` GitHub sends when a webhook is created.
    Ping {
        /// GitHub's random aphorism.
        zen: String,
        /// The id of the webhook that sent it.
        hook_id: u64,
    },
    /// A `push`.
    Push(Push),
    /// Any other event, by its `X-GitHub-Event` name; its body is not read.
    Other(String),
}

/// A `push` delivery: what moved where, and the commit now at its tip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Push {
    /// The full ref pushed: `refs/heads/main`, `refs/tags/v1.2.0`.
    pub git_ref: String,
    /// The ref's commit before the push (all zeros when the push created it).
    pub before: String,
    /// The ref's commit after the push (all zeros when the push deleted it).
    pub after: String,
    /// The branch name when `git_ref` is under `refs/heads/`.
    pub branch: Option<String>,
    /// The tag name when `git_ref` is under `refs/tags/`.
    pub tag: Option<String>,
    /// The push deleted the ref.
    pub deleted: bool,
    /// The push created the ref.
    pub created: bool,
    /// The push was a force push.
    pub forced: bool,
    /// The commit at the ref's tip after the push; `None` for a deletion.
    pub head_commit: Option<CommitInfo>,
    /// `owner/name` of the repository.
    pub repository_full_name: String,
    /// Who pushed (GitHub's `pusher.name`).
    pub pusher: String,
    /// GitHub's compare link between `before` and `after`.
    pub compare_url: String,
}

/// The tip commit of a push (`head_commit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitInfo {
    /// The commit's SHA.
    pub id: String,
    /// The full commit message.
    pub message: String,
    /// The commit author's name.
    pub author_name: String,
    /// The commit author's email.
    pub author_email: String,
    /// The commit's page on GitHub.
    pub url: String,
}

/// What ferry does with a push, for the branch `ferry.yml` watches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PushDecision {
    /// Start a run of this commit.
    Run {
        /// The pushed commit (`after`).
        sha: String,
    },
    /// Acknowledge the delivery and start nothing.
    Ignore(IgnoreReason),
}

/// Why a push starts no run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IgnoreReason {
    /// A tag was pushed (created, moved or deleted).
    Tag {
        /// The tag's name.
        tag: String,
    },
    /// The watched branch was deleted.
    BranchDeleted {
        /// The deleted branch.
        branch: String,
    },
    /// Another branch was pushed.
    OtherBranch {
        /// The branch that was pushed.
        pushed: String,
        /// The branch ferry watches.
        watched: String,
    },
    /// A ref that is neither a branch nor a tag (`refs/notes/…`, …).
    NotABranch {
        /// The ref.
        git_ref: String,
    },
}

impl std::fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IgnoreReason::Tag { tag } => {
                write!(f, "tag push `{tag}`: ferry runs pushes to its branch only")
            }
            IgnoreReason::BranchDeleted { branch } => {
                write!(
                    f,
                    "branch `{branch}` was deleted: there is no commit to run"
                )
            }
            IgnoreReason::OtherBranch { pushed, watched } => {
                write!(
                    f,
                    "push to branch `{pushed}`: ferry runs pushes to `{watched}`"
                )
            }
            IgnoreReason::NotABranch { git_ref } => {
                write!(
                    f,
                    "push to `{git_ref}`, which is not a branch: ferry runs branch pushes"
                )
            }
        }
    }
}

impl Push {
    /// Whether this push starts a run when ferry watches `branch` (`main` or
    /// `refs/heads/main`): [`PushDecision::Run`] with `after` for a push to that branch,
    /// otherwise [`PushDecision::Ignore`] for tag pushes, deletions, other branches and
    /// other refs.
    pub fn decision(&self, branch: &str) -> PushDecision {
        let watched = branch.strip_prefix("refs/heads/").unwrap_or(branch);
        if let Some(tag) = &self.tag {
            return PushDecision::Ignore(IgnoreReason::Tag { tag: tag.clone() });
        }
        let Some(pushed) = &self.branch else {
            return PushDecision::Ignore(IgnoreReason::NotABranch {
                git_ref: self.git_ref.clone(),
            });
        };
        if pushed != watched {
            return PushDecision::Ignore(IgnoreReason::OtherBranch {
                pushed: pushed.clone(),
                watched: watched.to_string(),
            });
        }
        if self.deleted || is_zero_sha(&self.after) {
            return PushDecision::Ignore(IgnoreReason::BranchDeleted {
                branch: pushed.clone(),
            });
        }
        PushDecision::Run {
            sha: self.after.clone(),
        }
    }
}

/// Whether `sha` is the all-zeros id GitHub uses for "no commit".
fn is_zero_sha(sha: &str) -> bool {
    !sha.is_empty() && sha.bytes().all(|b| b == b'0')
}

/// Parses a GitHub delivery: `event` is the `X-GitHub-Event` header, `body` the raw
/// JSON body (already checked with [`verify_signature`]).
///
/// `push` and `ping` are read into [`GithubEvent::Push`] and [`GithubEvent::Ping`];
/// any other event name gives [`GithubEvent::Other`] without reading the body. An
/// empty event name is [`HookError::MissingEvent`].
pub fn parse_github(event: &str, body: &[u8]) -> Result<GithubEvent, HookError> {
    match event.trim() {
        "" => Err(HookError::MissingEvent),
        "push" => {
            let value = json::parse(body, PUSH)?;
            parse_push(&Obj::root(&value, PUSH)?).map(GithubEvent::Push)
        }
        "ping" => {
            let value = json::parse(body, PING)?;
            let root = Obj::root(&value, PING)?;
            Ok(GithubEvent::Ping {
                zen: root
                    .req_str("zen", "a string: GitHub's aphorism")?
                    .to_string(),
                hook_id: root.req_u64("hook_id", "the webhook's numeric id")?,
            })
        }
        other => Ok(GithubEvent::Other(other.to_string())),
    }
}

const PUSH: &str = "GitHub push payload";
const PING: &str = "GitHub ping payload";

const SHA: &str = "a commit SHA: 40 (or, in SHA-256 repositories, 64) lowercase hex digits";

fn parse_push(root: &Obj<'_>) -> Result<Push, HookError> {
    let git_ref = root.req_str(
        "ref",
        "a string: the full ref pushed, such as `refs/heads/main`",
    )?;
    let before = sha(root, "before")?;
    let after = sha(root, "after")?;
    let flag = |key| root.opt_bool(key, "a boolean").map(|b| b.unwrap_or(false));
    let deleted = flag("deleted")?;
    let created = flag("created")?;
    let forced = flag("forced")?;
    let head_commit = match root.opt_obj("head_commit", "an object (the tip commit) or null")? {
        Some(commit) => Some(parse_commit(&commit)?),
        None => None,
    };
    let repository = root.req_obj("repository", "an object: the repository pushed to")?;
    let pusher = root.req_obj("pusher", "an object: who pushed")?;
    let non_empty = |name: &str| (!name.is_empty()).then(|| name.to_string());
    Ok(Push {
        git_ref: git_ref.to_string(),
        before: before.to_string(),
        after: after.to_string(),
        branch: git_ref.strip_prefix("refs/heads/").and_then(non_empty),
        tag: git_ref.strip_prefix("refs/tags/").and_then(non_empty),
        deleted,
        created,
        forced,
        head_commit,
        repository_full_name: repository
            .req_str("full_name", "a string: `owner/name`")?
            .to_string(),
        pusher: pusher
            .req_str("name", "a string: the pusher's name")?
            .to_string(),
        compare_url: root
            .req_str("compare", "a string: the compare link")?
            .to_string(),
    })
}

fn sha<'a>(obj: &Obj<'a>, key: &str) -> Result<&'a str, HookError> {
    let value = obj.req_str(key, SHA)?;
    let well_formed = (value.len() == 40 || value.len() == 64)
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if well_formed {
        Ok(value)
    } else {
        Err(obj.invalid(key, value, SHA))
    }
}

fn parse_commit(commit: &Obj<'_>) -> Result<CommitInfo, HookError> {
    let author = commit.req_obj("author", "an object: the commit's author")?;
    Ok(CommitInfo {
        id: sha(commit, "id")?.to_string(),
        message: commit
            .req_str("message", "a string: the commit message")?
            .to_string(),
        author_name: author
            .req_str("name", "a string: the author's name")?
            .to_string(),
        author_email: author
            .req_str("email", "a string: the author's email")?
            .to_string(),
        url: commit
            .req_str("url", "a string: the commit's page")?
            .to_string(),
    })
}
