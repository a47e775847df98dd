//! siaga-media
