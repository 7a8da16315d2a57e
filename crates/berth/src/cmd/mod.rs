//! One module per subcommand.

pub mod env;
pub mod registry;
pub mod server;
pub mod version;
