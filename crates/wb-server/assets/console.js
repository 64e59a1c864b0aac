// Work-books console: progressive enhancement only. Every page works
// without this file; with it, forms get live feedback and keyboard shortcuts.
// No eval, no inline handlers, no HTML built from strings (the CSP forbids
// the first two; the third keeps user text from becoming markup).
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  // htmx requests carry the CSRF token in a header.
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrfToken();
  });

  // A select that submits its form when changed (the company switcher).
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches && target.matches("[data-autosubmit]") && target.form) {
      target.form.requestSubmit();
    }
  });

  // A form is sent once: a double click does not post twice (the server's
  // idempotency key makes sure of it too).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset.submitted === "yes" && form.method.toLowerCase() === "post") {
      event.preventDefault();
      return;
    }
    if (form.method.toLowerCase() === "post") {
      form.dataset.submitted = "yes";
      window.setTimeout(function () { form.dataset.submitted = ""; }, 5000);
    }
  });

  // Secrets sent in a link's fragment (never to the server in a URL) are
  // moved into the form field that expects them.
  function fillFromHash() {
    var field = document.querySelector("[data-from-hash]");
    if (field && window.location.hash.length > 1) {
      field.value = decodeURIComponent(window.location.hash.slice(1));
      history.replaceState(null, "", window.location.pathname + window.location.search);
    }
  }

  // The new-entry form: add lines, and say whether it balances.
  // As the server reads a debit or credit: digits, at most one point, no
  // sign (the column is the sign) and no thousands separators.
  function parseAmount(text) {
    var t = (text || "").trim();
    if (!/^\d+(\.\d{1,8})?$/.test(t)) { return null; }
    var parts = t.split(".");
    var frac = (parts[1] || "").padEnd(8, "0");
    return BigInt(parts[0]) * 100000000n + BigInt(frac);
  }

  function formatAmount(value) {
    var negative = value < 0n;
    if (negative) { value = -value; }
    var whole = value / 100000000n;
    var frac = (value % 100000000n).toString().padStart(8, "0").replace(/0+$/, "");
    if (frac.length < 2) { frac = frac.padEnd(2, "0"); }
    return (negative ? "-" : "") + whole.toString() + "." + frac;
  }

  function updateBalance(form) {
    var out = form.querySelector("[data-balance]");
    if (!out) { return; }
    var sums = {};
    var invalid = false;
    form.querySelectorAll("tr[data-line]").forEach(function (row) {
      var debit = row.querySelector('input[name="debit"]').value.trim();
      var credit = row.querySelector('input[name="credit"]').value.trim();
      var currency = row.querySelector('[name="currency"]').value.trim().toUpperCase() || "?";
      if (debit === "" && credit === "") { return; }
      var d = debit === "" ? 0n : parseAmount(debit);
      var c = credit === "" ? 0n : parseAmount(credit);
      if (d === null || c === null) { invalid = true; return; }
      sums[currency] = (sums[currency] || 0n) + d - c;
    });
    var off = Object.keys(sums).filter(function (c) { return sums[c] !== 0n; });
    if (invalid) {
      out.textContent = "Amounts are plain numbers, like 1234.50";
      out.className = "unbalanced";
    } else if (Object.keys(sums).length === 0) {
      out.textContent = "No amounts yet";
      out.className = "muted";
    } else if (off.length === 0) {
      out.textContent = "Balanced";
      out.className = "balanced";
    } else {
      out.textContent = "Off by " + off.map(function (c) { return formatAmount(sums[c]) + " " + c; }).join(", ");
      out.className = "unbalanced";
    }
  }

  function renumber(form) {
    form.querySelectorAll("tr[data-line]").forEach(function (row, i) {
      row.querySelectorAll("input, select").forEach(function (field) {
        var base = field.name;
        field.id = base + "-" + i;
        var label = row.querySelector('label[data-for="' + base + '"]');
        if (label) {
          label.setAttribute("for", field.id);
          label.textContent = label.textContent.replace(/line \d+$/, "line " + (i + 1));
        }
      });
    });
  }

  function enhanceEntryForm(form) {
    form.addEventListener("input", function () { updateBalance(form); });
    var add = form.querySelector("[data-add-line]");
    if (add) {
      add.hidden = false;
      add.addEventListener("click", function () {
        var rows = form.querySelectorAll("tr[data-line]");
        var last = rows[rows.length - 1];
        var copy = last.cloneNode(true);
        copy.querySelectorAll("input").forEach(function (input) { input.value = ""; });
        copy.querySelectorAll(".field-error").forEach(function (e) { e.remove(); });
        var currency = last.querySelector('[name="currency"]').value;
        copy.querySelector('[name="currency"]').value = currency;
        last.parentNode.appendChild(copy);
        renumber(form);
        copy.querySelector('input[name="account"]').focus();
        updateBalance(form);
      });
    }
    updateBalance(form);
  }

  // Keyboard shortcuts (none while typing in a field).
  var pendingG = false;
  function companyBase() {
    var link = document.querySelector("nav.company a");
    return link ? link.getAttribute("href") : null;
  }
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    var t = event.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) { return; }
    var base = companyBase();
    var key = event.key;
    if (pendingG) {
      pendingG = false;
      var where = { d: "", a: "/accounts", e: "/entries", r: "/reports" }[key];
      if (base !== null && where !== undefined) {
        event.preventDefault();
        window.location.assign(base + where);
      }
      return;
    }
    if (key === "g") { pendingG = true; window.setTimeout(function () { pendingG = false; }, 1500); return; }
    if (key === "?") {
      var dialog = document.getElementById("shortcuts");
      if (dialog && dialog.showModal) { event.preventDefault(); dialog.showModal(); }
      return;
    }
    if (key === "n" && base !== null) { event.preventDefault(); window.location.assign(base + "/entries/new"); return; }
    if (key === "/") {
      var search = document.getElementById("q");
      event.preventDefault();
      if (search) { search.focus(); } else if (base !== null) { window.location.assign(base + "/entries#search"); }
    }
  });

  // Passkeys: the login's second step, and adding one on the account page.
  function b64urlToBytes(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var bin = atob(b64);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out.buffer;
  }
  function bytesToB64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var bin = "";
    for (var i = 0; i < bytes.length; i++) { bin += String.fromCharCode(bytes[i]); }
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function enhancePasskeyLogin(button) {
    if (!window.PublicKeyCredential) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      var options = JSON.parse(button.dataset.passkeyOptions).publicKey;
      options.challenge = b64urlToBytes(options.challenge);
      (options.allowCredentials || []).forEach(function (c) { c.id = b64urlToBytes(c.id); });
      navigator.credentials.get({ publicKey: options }).then(function (cred) {
        var answer = {
          id: cred.id, rawId: bytesToB64url(cred.rawId), type: cred.type,
          extensions: cred.getClientExtensionResults(),
          response: {
            authenticatorData: bytesToB64url(cred.response.authenticatorData),
            clientDataJSON: bytesToB64url(cred.response.clientDataJSON),
            signature: bytesToB64url(cred.response.signature),
            userHandle: cred.response.userHandle ? bytesToB64url(cred.response.userHandle) : null
          }
        };
        var form = button.form;
        form.querySelector('input[name="passkey"]').value = JSON.stringify(answer);
        form.requestSubmit();
      }).catch(function () {
        var out = document.getElementById("passkey-status");
        if (out) { out.textContent = "The passkey was not used. Try again or enter a code."; }
      });
    });
  }

  function enhancePasskeyCreate(button) {
    if (!window.PublicKeyCredential) { return; }
    button.hidden = false;
    var start = function () {
      var options = JSON.parse(button.dataset.passkeyCreate).publicKey;
      options.challenge = b64urlToBytes(options.challenge);
      options.user.id = b64urlToBytes(options.user.id);
      (options.excludeCredentials || []).forEach(function (c) { c.id = b64urlToBytes(c.id); });
      navigator.credentials.create({ publicKey: options }).then(function (cred) {
        var answer = {
          id: cred.id, rawId: bytesToB64url(cred.rawId), type: cred.type,
          extensions: cred.getClientExtensionResults(),
          response: {
            attestationObject: bytesToB64url(cred.response.attestationObject),
            clientDataJSON: bytesToB64url(cred.response.clientDataJSON),
            transports: cred.response.getTransports ? cred.response.getTransports() : null
          }
        };
        var form = button.form;
        form.querySelector('input[name="credential"]').value = JSON.stringify(answer);
        form.requestSubmit();
      }).catch(function (err) {
        var out = document.getElementById("passkey-status");
        if (out) { out.textContent = "No passkey was created (" + (err && err.name || "error") + "). Press the button to try again, or cancel."; }
      });
    };
    // Started by the person's click: some browsers refuse it otherwise.
    button.addEventListener("click", start);
  }

  function init() {
    fillFromHash();
    document.querySelectorAll("form[data-entry-form]").forEach(enhanceEntryForm);
    document.querySelectorAll("button[data-passkey-options]").forEach(enhancePasskeyLogin);
    document.querySelectorAll("button[data-passkey-create]").forEach(enhancePasskeyCreate);
    if (window.location.hash === "#search") {
      var search = document.getElementById("q");
      if (search) { search.focus(); }
    }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
