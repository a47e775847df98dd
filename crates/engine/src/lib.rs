//! siaga-engine
