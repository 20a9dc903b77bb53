//! `natter-client [--tls [--tls-ca PATH] [--tls-name NAME]] [HOST] [PORT]`: the natter desktop
//! client.
//!
//! # Layout
//! This file only reads the arguments and opens the window; the client lives in the
//! library: [`natter_client::model`] (state and protocol), [`natter_client::net`] (the
//! network thread), [`natter_client::app`] and [`natter_client::view`] (the window).

use clap::Parser;
use natter_client::net::{NetConfig, TlsOptions};
use natter_client::{ChatApp, Options};
use std::path::PathBuf;

/// The natter desktop chat client.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The server's host name or address; without it, a connect screen asks.
    host: Option<String>,
    /// The server's port.
    port: Option<u16>,
    /// Connect over TLS (to a server started with `--tls-cert` and `--tls-key`).
    #[arg(long)]
    tls: bool,
    /// With `--tls`: trust the CA certificates in this PEM file instead of the Mozilla roots.
    #[arg(long, value_name = "PATH", requires = "tls")]
    tls_ca: Option<PathBuf>,
    /// With `--tls`: the name to check the server's certificate for [default: the host].
    #[arg(long, value_name = "NAME", requires = "tls")]
    tls_name: Option<String>,
}

fn main() -> eframe::Result {
    let args = Args::parse();
    let defaults = Options::default();
    let options = Options {
        connect_now: args.host.is_some() || args.port.is_some(),
        host: args.host.unwrap_or(defaults.host),
        port: args.port.unwrap_or(defaults.port),
        net: NetConfig {
            tls: args.tls.then_some(TlsOptions {
                ca: args.tls_ca,
                name: args.tls_name,
            }),
            ..defaults.net
        },
        config_dir: defaults.config_dir,
    };
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("natter")
            .with_app_id("natter-client")
            .with_inner_size([980.0, 640.0])
            .with_min_inner_size([560.0, 380.0]),
        ..Default::default()
    };
    eframe::run_native(
        "natter",
        native,
        Box::new(move |cc| Ok(Box::new(ChatApp::new(&cc.egui_ctx, options)?))),
    )
}
