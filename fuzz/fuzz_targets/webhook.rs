//! Webhooks: any push delivery (headers and body) is verified and classified without
//! panicking, a body signed with the secret always verifies, and any pipeline trigger
//! body becomes a run env or is refused.
#![no_main]

use arbitrary::Arbitrary;
use flotilla::server::hooks::trigger_env;
use flotilla::source::git::push::{Delivery, WebhookSecret, classify, sign, verify};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    secret: &'a str,
    branch: &'a str,
    github_signature: Option<&'a str>,
    generic_signature: Option<&'a str>,
    gitlab_token: Option<&'a str>,
    github_event: Option<&'a str>,
    gitlab_event: Option<&'a str>,
    body: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let secret = WebhookSecret::new(input.secret);
    let delivery = Delivery {
        github_signature: input.github_signature,
        generic_signature: input.generic_signature,
        gitlab_token: input.gitlab_token,
        github_event: input.github_event,
        gitlab_event: input.gitlab_event,
        body: input.body,
    };
    let _ = verify(secret.as_ref(), &delivery);
    let _ = classify(input.branch, &delivery);
    if let Some(secret) = &secret {
        let signature = sign(input.secret, input.body);
        let signed = Delivery {
            github_signature: Some(&signature),
            ..delivery
        };
        assert_eq!(verify(Some(secret), &signed), Ok(()));
    }
    let _ = trigger_env(input.body);
});
