// Security keys: the one place the console needs JavaScript (WebAuthn is a
// browser API). The page carries the server's options in #webauthn
// (data-options, data-mode="create" or "get"); the button asks the
// browser for the key, and the answer goes back in the page's own form.
const b64u = {
  decode: (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0)),
  encode: (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, ''),
};

const holder = document.getElementById('webauthn');
const button = document.getElementById('webauthn-start');
if (holder && button && window.PublicKeyCredential) {
  button.hidden = false;
  button.addEventListener('click', async () => {
    const failure = document.getElementById('webauthn-failed');
    failure.hidden = true;
    const options = JSON.parse(holder.dataset.options).publicKey;
    options.challenge = b64u.decode(options.challenge);
    let answer;
    try {
      if (holder.dataset.mode === 'create') {
        options.user.id = b64u.decode(options.user.id);
        // webauthn-rs asks keys, opportunistically (not enforced), to
        // protect the credential with user verification; Chromium refuses
        // that request unless verification is required overall, so leave
        // it out here. The server does not depend on it.
        if (options.extensions) {
          delete options.extensions.credentialProtectionPolicy;
          delete options.extensions.enforceCredentialProtectionPolicy;
        }
        (options.excludeCredentials || []).forEach((c) => { c.id = b64u.decode(c.id); });
        const cred = await navigator.credentials.create({ publicKey: options });
        answer = {
          id: cred.id,
          rawId: b64u.encode(cred.rawId),
          type: cred.type,
          response: {
            attestationObject: b64u.encode(cred.response.attestationObject),
            clientDataJSON: b64u.encode(cred.response.clientDataJSON),
          },
          extensions: cred.getClientExtensionResults(),
        };
      } else {
        (options.allowCredentials || []).forEach((c) => { c.id = b64u.decode(c.id); });
        const cred = await navigator.credentials.get({ publicKey: options });
        answer = {
          id: cred.id,
          rawId: b64u.encode(cred.rawId),
          type: cred.type,
          response: {
            authenticatorData: b64u.encode(cred.response.authenticatorData),
            clientDataJSON: b64u.encode(cred.response.clientDataJSON),
            signature: b64u.encode(cred.response.signature),
            userHandle: cred.response.userHandle ? b64u.encode(cred.response.userHandle) : null,
          },
          extensions: cred.getClientExtensionResults(),
        };
      }
    } catch (e) {
      console.warn('WebAuthn failed:', e.name, e.message);
      failure.hidden = false;
      return;
    }
    document.getElementById('webauthn-credential').value = JSON.stringify(answer);
    document.getElementById('webauthn-form').submit();
  });
}
