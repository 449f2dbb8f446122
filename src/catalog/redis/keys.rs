//! Where the shared catalog keeps what in Redis. Every key of one table
//! carries the same hash tag, `{<db>/<table>}` (`/` is in no name), so the
//! commit scripts touch one hash slot and also run on Redis Cluster; the global
//! keys are each read and written by single commands or scripts on that one key.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<prefix>:tables` | SET | every table, as the JSON `["<db>","<table>"]` |
//! | `<prefix>:epoch` | STRING | a counter bumped after every commit: followers poll it |
//! | `<prefix>:writers` | HASH | writer id → the id of the data root (its `.hourglass-id`) that writes under it |
//! | `<prefix>:relations` | HASH | `version` (grows by one per change) and `json`: the schemas, views and tables SQL made, in every database |
//! | `<prefix>:{<db>/<table>}:schema` | HASH | `version` (grows by one per change) and `json` (the columns) |
//! | `<prefix>:{<db>/<table>}:seq` | STRING | the table's change sequence: every commit takes the next |
//! | `<prefix>:{<db>/<table>}:log` | ZSET | the last 10,000 changes: score = sequence, member `<seq>\|<hour>\|<writer id>\|<lease token>` (token empty for writes), `<seq>\|schema` or `<seq>\|deletes` |
//! | `<prefix>:{<db>/<table>}:commits` | ZSET | the last 100,000 commit ids (score = sequence): a retried commit is applied once |
//! | `<prefix>:{<db>/<table>}:partitions` | ZSET | the hour partitions with an entry (score and member: hours since the epoch) |
//! | `<prefix>:{<db>/<table>}:files:<hour>` | HASH | the partition's files: field = file id, value = the file entry's JSON |
//! | `<prefix>:{<db>/<table>}:wal:<hour>` | HASH | per writer id, the highest WAL sequence its files in the partition cover |
//! | `<prefix>:{<db>/<table>}:lease` | STRING | `<process id>\|<token>` while a compactor holds the table's lease (expires unless renewed) |
//! | `<prefix>:{<db>/<table>}:fence` | STRING | the last lease token handed out: each new holder gets a larger one |
//! | `<prefix>:{<db>/<table>}:tombstones` | HASH | the deletes not yet carried out everywhere: field = the delete's sequence (taken from `seq`), value = its JSON |
//! | `<prefix>:{<db>/<table>}:applied` | HASH | writer id → the newest delete that writer carried out on its write buffer |
//! | `<prefix>:alive` | ZSET | writer id → its last heartbeat (ms, Redis's clock): a delete waits for the live writers |
//! | `<prefix>:readers:<release>` | ZSET | a reader's FlightSQL URL → its last heartbeat (ms, Redis's clock): a query is spread over the live readers of its release |
//! | `<prefix>:worker_secret` | STRING | the secret the readers' workers ask each other for |

/// The keys of one catalog (one prefix).
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        Keys { prefix: prefix.to_owned() }
    }

    pub(super) fn tables(&self) -> String {
        format!("{}:tables", self.prefix)
    }

    pub(super) fn writers(&self) -> String {
        format!("{}:writers", self.prefix)
    }

    pub(super) fn relations(&self) -> String {
        format!("{}:relations", self.prefix)
    }

    pub(super) fn tokens(&self) -> String {
        format!("{}:tokens", self.prefix)
    }

    pub(super) fn alive(&self) -> String {
        format!("{}:alive", self.prefix)
    }

    /// The live readers of this release: a reader spreads queries over
    /// readers of its own release only, since the stages it sends are in
    /// that release's plan encoding (a rolling upgrade runs two clusters of
    /// workers side by side until it ends).
    pub(super) fn readers(&self) -> String {
        format!("{}:readers:{}", self.prefix, env!("CARGO_PKG_VERSION"))
    }

    pub(super) fn worker_secret(&self) -> String {
        format!("{}:worker_secret", self.prefix)
    }

    pub(super) fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }

    pub(super) fn table(&self, database: &str, table: &str) -> TableKeys {
        TableKeys { base: format!("{}:{{{database}/{table}}}", self.prefix) }
    }
}

/// The keys of one table, all in one hash slot.
#[derive(Debug, Clone)]
pub(super) struct TableKeys {
    base: String,
}

impl TableKeys {
    pub(super) fn schema(&self) -> String {
        format!("{}:schema", self.base)
    }

    pub(super) fn seq(&self) -> String {
        format!("{}:seq", self.base)
    }

    pub(super) fn log(&self) -> String {
        format!("{}:log", self.base)
    }

    pub(super) fn commits(&self) -> String {
        format!("{}:commits", self.base)
    }

    pub(super) fn partitions(&self) -> String {
        format!("{}:partitions", self.base)
    }

    pub(super) fn lease(&self) -> String {
        format!("{}:lease", self.base)
    }

    pub(super) fn fence(&self) -> String {
        format!("{}:fence", self.base)
    }

    pub(super) fn tombstones(&self) -> String {
        format!("{}:tombstones", self.base)
    }

    pub(super) fn applied(&self) -> String {
        format!("{}:applied", self.base)
    }

    pub(super) fn files(&self, hour: i64) -> String {
        format!("{}:files:{hour}", self.base)
    }

    pub(super) fn wal(&self, hour: i64) -> String {
        format!("{}:wal:{hour}", self.base)
    }
}

/// The member of the tables set that names a table.
pub(super) fn table_member(database: &str, table: &str) -> String {
    serde_json::json!([database, table]).to_string()
}

/// The table a member of the tables set names.
pub(super) fn parse_table_member(member: &str) -> Option<(String, String)> {
    serde_json::from_str(member).ok()
}
