//! Pure rules: no axum, no database, no clock (time is a parameter).
