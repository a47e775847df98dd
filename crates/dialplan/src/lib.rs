//! siaga-dialplan
