pub mod cache;
pub mod server;
