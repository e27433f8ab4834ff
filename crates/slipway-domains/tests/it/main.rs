mod acme;
mod acme_support;
mod dns;
