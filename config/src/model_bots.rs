//! The `[bots]` table: which requests are taken for bots and what happens
//! to their events. Every key is reloadable; list files are also re-read
//! when they change on disk.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::defaults;

/// Bot filtering (`[bots]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bots {
    /// `false` turns bot filtering off for every site.
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
    /// Use the user-agent and referrer-spam lists compiled into the binary
    /// (crawler-user-agents, isbot, COUNTER-Robots, Matomo referrer spam).
    #[serde(default = "defaults::enabled")]
    pub vendored_lists: bool,
    /// More user-agent lists: `.json` (crawler-user-agents or isbot format)
    /// or one regex per line (`!` = exception).
    #[serde(default)]
    pub user_agent_files: Vec<PathBuf>,
    /// Data-centre networks, one CIDR per line (`!` = exception).
    #[serde(default)]
    pub datacenter_cidr_files: Vec<PathBuf>,
    /// Referrer-spam host names, one per line (subdomains match too).
    #[serde(default)]
    pub referrer_spam_files: Vec<PathBuf>,
    /// A user agent longer than this is absurd.
    #[serde(default = "defaults::bots_max_user_agent_bytes")]
    pub max_user_agent_bytes: u32,
    /// A user agent shorter than this is absurd.
    #[serde(default = "defaults::bots_min_user_agent_bytes")]
    pub min_user_agent_bytes: u32,
    /// What happens to a bot's events (sites may override).
    #[serde(default = "defaults::bot_action")]
    pub action: BotAction,
}

impl Default for Bots {
    fn default() -> Self {
        Self {
            enabled: true,
            vendored_lists: true,
            user_agent_files: Vec::new(),
            datacenter_cidr_files: Vec::new(),
            referrer_spam_files: Vec::new(),
            max_user_agent_bytes: defaults::bots_max_user_agent_bytes(),
            min_user_agent_bytes: defaults::bots_min_user_agent_bytes(),
            action: defaults::bot_action(),
        }
    }
}

impl Bots {
    /// Every list file named, for watching.
    pub fn files(&self) -> impl Iterator<Item = &PathBuf> {
        self.user_agent_files
            .iter()
            .chain(&self.datacenter_cidr_files)
            .chain(&self.referrer_spam_files)
    }
}

/// What the edge does with events it takes for a bot's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BotAction {
    /// Answer with the normal success status and forward nothing (bots
    /// learn nothing from the answer).
    Drop,
    /// Forward the events with a `edge-bot: REASON` Kafka header, so the
    /// backend can count them apart.
    Tag,
    /// No bot filtering for this site.
    Off,
}

impl fmt::Display for BotAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Drop => "drop",
            Self::Tag => "tag",
            Self::Off => "off",
        })
    }
}
