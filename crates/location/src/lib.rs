//! siaga-location
