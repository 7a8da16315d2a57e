//! One module per subcommand.

pub mod agent;
pub mod deploy;
pub mod env;
pub mod image;
pub mod lb;
pub mod lbplane;
pub mod registry;
pub mod server;
pub mod tasks;
pub mod version;
