//! Integration tests of nlds-rs over real connections: the embedded mode (SQLite, in-process bus,
//! embedded S3), the distributed mode (RabbitMQ, PostgreSQL, moto S3) and the fault-injection suite
//! (chaos/: private broker and database, killed and restarted).

mod acceptance;
mod access;
mod access_tracking;
mod archive;
mod authz;
mod bad_input;
mod batches;
mod cancel;
mod chaos;
mod cli;
mod competing;
mod debris;
mod delete;
mod distributed;
mod embedded;
mod evict_race;
mod faithful;
mod helpers;
mod hostile;
mod legacy;
mod limits;
mod live;
mod logs;
mod notify;
mod oidc;
mod parsers;
mod policy;
mod policy_cli;
mod posix;
mod python_client;
mod quota;
mod resources;
mod restart;
mod retry;
mod rolling;
mod secrets;
mod signing_s3;
mod stage;
mod status_page;
mod storage_audit_cli;
mod streaming;
mod tape_recall;
mod tenancy;
mod versions;
