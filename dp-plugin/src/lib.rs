pub mod merge;
pub mod parse;
