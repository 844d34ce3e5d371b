//! Certificates made in the test (rcgen): a server CA whose certificate
//! is for `localhost` and 127.0.0.1, and a separate client CA for mTLS.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

pub struct Pki {
    /// The CA a client trusts.
    pub ca: String,
    pub server_cert: String,
    pub server_key: String,
    /// The CA hiltd checks client certificates against.
    pub client_ca: String,
    pub client_cert: String,
    pub client_key: String,
}

fn make_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).expect("self-signed CA");
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(issuer: &Issuer<'static, KeyPair>, names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().expect("leaf key");
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let params = CertificateParams::new(names).expect("leaf params");
    let cert = params.signed_by(&key, issuer).expect("signed leaf");
    (cert.pem(), key.serialize_pem())
}

pub fn pki() -> Pki {
    let (ca, server_issuer) = make_ca("hilt test server CA");
    let (server_cert, server_key) = leaf(&server_issuer, &["localhost", "127.0.0.1"]);
    let (client_ca, client_issuer) = make_ca("hilt test client CA");
    let (client_cert, client_key) = leaf(&client_issuer, &["trainer.lab"]);
    Pki {
        ca,
        server_cert,
        server_key,
        client_ca,
        client_cert,
        client_key,
    }
}
