// The browser upload page: the same flow a mobile app follows, in plain JavaScript.
//   1. log in            POST /api/auth/login/            -> JWT (kept in sessionStorage only)
//                        (or POST /api/auth/guest/ when the server enables guests)
//   2. credentials       GET  /api/sts/credentials/       -> STS key, bucket, endpoint, RefreshAfter
//   3. ticket per file   POST /api/uploads/tickets/       -> the key and the callback parameters
//   4. upload            ali-oss multipartUpload straight to OSS, with the ticket's callback;
//                        or, with "PostObject form" chosen, the ticket's signed form posted as
//                        is (mode "form": no credentials at all, as a mini program does)
//   5. OSS calls the server back; the server records the upload and OSS relays its JSON answer
//   6. list              GET  /api/uploads/ (each image's variants.thumbnail is a signed URL)
'use strict';

(function () {
  const app = document.getElementById('app');
  const config = {
    pathStyle: app.dataset.pathStyle === 'true',
    signatureVersion: app.dataset.signatureVersion || 'v4',
    maxSize: Number(app.dataset.maxSize || 0),
  };
  const $ = id => document.getElementById(id);
  const store = window.sessionStorage;

  // ---- API calls with the JWT ----------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function parseError(response) {
    let body = {};
    try {
      body = await response.json();
    } catch (_) {
      /* not JSON: fall through to the status text */
    }
    if (body.error) return new ApiError(response.status, body.error.code, body.error.message);
    if (body.ErrorCode) return new ApiError(response.status, body.ErrorCode, body.ErrorMessage);
    return new ApiError(response.status, 'http_' + response.status, response.statusText);
  }

  // A refresh token works once, and sending a used one ends the session: parallel uploads that
  // meet an expired access token together share one refresh instead of each sending the token.
  let refreshing = null;
  function refreshTokens() {
    if (!refreshing) refreshing = sendRefresh().finally(() => { refreshing = null; });
    return refreshing;
  }

  async function sendRefresh() {
    const refresh = store.getItem('refresh');
    if (!refresh) return false;
    const response = await fetch('/api/auth/refresh/', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ refresh }),
    });
    if (!response.ok) return false;
    const tokens = await response.json();
    store.setItem('access', tokens.access);
    if (tokens.refresh) store.setItem('refresh', tokens.refresh);
    return true;
  }

  async function api(path, { method = 'GET', body, retry = true } = {}) {
    const sent = store.getItem('access');
    const headers = { Authorization: 'Bearer ' + sent };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    // The access token lives 15 minutes; rotate once with the refresh token, then give up. A
    // request sent before a parallel one's refresh finished retries with the new token: a
    // second refresh would spend the rotated token for nothing.
    if (response.status === 401 && retry) {
      if (store.getItem('access') !== sent || (await refreshTokens())) {
        return api(path, { method, body, retry: false });
      }
    }
    if (response.status === 401) {
      showLoggedOut('Your session has ended. Log in again.');
    }
    if (!response.ok) throw await parseError(response);
    return response.status === 204 ? null : response.json();
  }

  // ---- STS credentials and the OSS client ----------------------------------------------------

  let ossClient = null;
  let credentialsBucket = null;

  // RefreshAfter may be an ISO time or a number of seconds from now; either way we refresh a
  // little before it, and never more often than every 10 seconds.
  function msUntilRefresh(credentials) {
    const serverNow = Date.parse(credentials.ServerTime) || Date.now();
    let refreshAt;
    if (typeof credentials.RefreshAfter === 'number') {
      refreshAt = serverNow + credentials.RefreshAfter * 1000;
    } else if (credentials.RefreshAfter) {
      refreshAt = Date.parse(credentials.RefreshAfter);
    } else {
      refreshAt = Date.parse(credentials.Expiration) - 5 * 60 * 1000;
    }
    return Math.max(10 * 1000, refreshAt - serverNow);
  }

  function describeCredentials(credentials) {
    const expires = new Date(credentials.Expiration).toLocaleTimeString();
    $('credentials').textContent =
      `Temporary key ${credentials.AccessKeyId.slice(0, 10)}… for ${credentials.Bucket}/` +
      `${credentials.Prefix}, valid until ${expires}.`;
  }

  async function fetchCredentials() {
    const credentials = await api('/api/sts/credentials/?scope=readwrite');
    describeCredentials(credentials);
    return credentials;
  }

  function usePathStyle(endpoint) {
    // ali-oss drops the bucket from the URL for an IP endpoint unless path style (sldEnable)
    // is on; a server configured for path style (an emulator behind a service name) needs it too.
    const host = new URL(endpoint).hostname;
    return config.pathStyle || /^[0-9.]+$/.test(host) || host.startsWith('[');
  }

  async function getOssClient() {
    if (ossClient) return ossClient;
    const credentials = await fetchCredentials();
    credentialsBucket = credentials.Bucket;
    const endpoint = credentials.Endpoint;
    ossClient = new window.OSS({
      accessKeyId: credentials.AccessKeyId,
      accessKeySecret: credentials.AccessKeySecret,
      stsToken: credentials.SecurityToken,
      bucket: credentials.Bucket,
      endpoint,
      region: 'oss-' + credentials.Region,
      secure: endpoint.startsWith('https:'),
      sldEnable: usePathStyle(endpoint),
      authorizationV4: config.signatureVersion === 'v4',
      timeout: 120000,
      // ali-oss calls this before a request once refreshSTSTokenInterval has passed since the
      // last refresh; we move the interval to the server's RefreshAfter each time.
      refreshSTSTokenInterval: msUntilRefresh(credentials),
      refreshSTSToken: async () => {
        const fresh = await fetchCredentials();
        ossClient.options.refreshSTSTokenInterval = msUntilRefresh(fresh);
        ossClient.options.amendTimeSkewed = clockSkew(fresh);
        return {
          accessKeyId: fresh.AccessKeyId,
          accessKeySecret: fresh.AccessKeySecret,
          stsToken: fresh.SecurityToken,
        };
      },
    });
    // A wrong clock on this machine would make OSS refuse every signature (RequestTimeTooSkewed).
    ossClient.options.amendTimeSkewed = clockSkew(credentials);
    return ossClient;
  }

  function clockSkew(credentials) {
    const server = Date.parse(credentials.ServerTime);
    return Number.isNaN(server) ? 0 : server - Date.now();
  }

  // The ticket's callback parameters in the form ali-oss takes ({url, body, contentType, host,
  // customValue}); ali-oss turns them back into the x-oss-callback headers on the PutObject or
  // CompleteMultipartUpload request, never on the part uploads.
  function callbackOption(ticket) {
    const cb = ticket.callback || {};
    const vars = cb.callbackVar || cb.callbackVars || cb.variables || {};
    const customValue = {};
    for (const [name, value] of Object.entries(vars)) {
      customValue[name.replace(/^x:/, '')] = value;
    }
    const option = {
      url: cb.callbackUrl,
      body: cb.callbackBody,
      contentType: cb.callbackBodyType,
    };
    if (cb.callbackHost) option.host = cb.callbackHost;
    if (Object.keys(customValue).length) option.customValue = customValue;
    return option;
  }

  function noOverwriteHeaders(ticket) {
    const value = (ticket.headers || {})['x-oss-forbid-overwrite'] || 'true';
    return { 'x-oss-forbid-overwrite': value };
  }

  // ---- Uploading -----------------------------------------------------------------------------

  function progressRow(file) {
    const li = document.createElement('li');
    li.className = 'uploading';
    li.innerHTML =
      '<div class="progress-name"><span class="progress-file"></span>' +
      '<span class="progress-status">waiting</span></div>' +
      '<progress max="100" value="0"></progress>';
    li.querySelector('.progress-file').textContent = file.name;
    $('progress-list').prepend(li);
    return {
      set(percent, status) {
        li.querySelector('progress').value = percent;
        li.querySelector('.progress-status').textContent = status || `${percent}%`;
        li.dataset.percent = String(percent);
      },
      done(text) {
        li.className = 'done';
        this.set(100, text);
      },
      fail(text, code) {
        li.className = 'failed';
        li.dataset.code = code || 'error';
        li.querySelector('.progress-status').textContent = text;
      },
    };
  }

  function describeOssError(err) {
    if (err instanceof ApiError) return err.message;
    return (err.code ? err.code + ': ' : '') + (err.message || String(err));
  }

  // OSS answers 203 CallbackFailed when it stored the object but our server did not answer in
  // time, and an answer can be lost on the way back: the bytes may be stored either way. Never
  // send them again: the server checks the stored object and answers as the callback would
  // have (409 object_missing: nothing stored, the upload really failed).
  async function confirmUpload(ticket, uploadError) {
    try {
      return await api(`/api/uploads/tickets/${ticket.id}/confirm/`, { method: 'POST' });
    } catch (err) {
      if (err instanceof ApiError && err.code === 'object_missing') throw uploadError;
      throw err;
    }
  }

  // A form ticket's upload: its fields as given, then the file, posted straight to the bucket.
  // XMLHttpRequest rather than fetch, for the upload progress. Resolves with the server's
  // answer OSS relays (HTTP 200); rejects with OSS's own error (XML) otherwise.
  function postForm(upload, file, onProgress) {
    const form = new FormData();
    for (const [name, value] of Object.entries(upload.fields)) form.append(name, value);
    form.append(upload.file_field || 'file', file);
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', upload.url);
      xhr.upload.onprogress = event => {
        if (event.lengthComputable) onProgress(event.loaded / event.total);
      };
      xhr.onerror = () => reject(new ApiError(0, 'network', 'the upload did not reach OSS'));
      xhr.onload = () => {
        if (xhr.status === 200) {
          try {
            resolve(JSON.parse(xhr.responseText));
          } catch (_) {
            reject(new ApiError(200, 'bad_answer', 'OSS relayed an answer that is not JSON'));
          }
          return;
        }
        const xml = new DOMParser().parseFromString(xhr.responseText || '<x/>', 'application/xml');
        const text = tag => (xml.getElementsByTagName(tag)[0] || {}).textContent || '';
        const err = new ApiError(xhr.status, text('Code') || 'http_' + xhr.status, text('Message'));
        reject(err);
      };
      xhr.send(form);
    });
  }

  async function uploadFile(file) {
    const row = progressRow(file);
    const mode = $('upload-mode').value;
    try {
      if (config.maxSize && file.size > config.maxSize) {
        throw new ApiError(400, 'too_large', `larger than the ${config.maxSize} bytes allowed`);
      }
      row.set(0, 'asking for a ticket');
      const ticket = await api('/api/uploads/tickets/', {
        method: 'POST',
        body: {
          filename: file.name,
          size: file.size,
          content_type: file.type || 'application/octet-stream',
          metadata: { source: 'upload-page' },
          mode,
        },
      });
      row.set(0);
      let answer;
      try {
        // A form ticket needs no credentials at all, as a mini program's upload.
        answer = mode === 'form'
          ? await postForm(ticket.upload, file, f => row.set(Math.round(f * 100)))
          : await uploadWithCredentials(ticket, file, row);
      } catch (err) {
        row.set(100, 'checking with the server');
        answer = await confirmUpload(ticket, err);
        row.confirmed = true;
      }
      if (answer.ok === false) {
        const reason = (answer.error && answer.error.message) || 'refused';
        throw new ApiError(200, (answer.error && answer.error.code) || 'refused', reason);
      }
      row.done(row.confirmed ? '100% uploaded (confirmed)' : '100% uploaded');
      await loadUploads();
    } catch (err) {
      row.fail(describeOssError(err), err.code);
      console.error('upload failed', err);
    }
  }

  // ali-oss with the user's STS credentials: multipart, the ticket's callback on the completion.
  async function uploadWithCredentials(ticket, file, row) {
    const client = await getOssClient();
    if (ticket.bucket && ticket.bucket !== credentialsBucket) client.useBucket(ticket.bucket);
    const result = await client.multipartUpload(ticket.key, file, {
      mime: file.type || 'application/octet-stream',
      partSize: 1024 * 1024,
      parallel: 3,
      // ali-oss sends these on the initiation, every part and the completion (or on the one
      // PutObject of a small file): OSS then refuses to replace an existing object, and the
      // session policy refuses any upload request without it.
      headers: noOverwriteHeaders(ticket),
      callback: callbackOption(ticket),
      progress: fraction => row.set(Math.round(fraction * 100)),
    });
    // result.data is the server's callback answer, relayed by OSS. A refusal also arrives with
    // HTTP 200 (OSS relays only 200 answers).
    return result.data || {};
  }

  // ---- The list of uploads -------------------------------------------------------------------

  let nextPage = null;

  function humanSize(bytes) {
    const units = ['B', 'KB', 'MB', 'GB', 'TB'];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return `${unit ? value.toFixed(1) : value} ${units[unit]}`;
  }

  function uploadName(upload) {
    return upload.filename || upload.key.split('/').pop();
  }

  async function thumbnailUrl(upload) {
    // The 256-pixel variant OSS derives (IMAGE_VARIANTS), never the full original, when the
    // server offers one; the original's signed URL otherwise.
    const variant = (upload.variants || {}).thumbnail;
    if (variant) return variant.url;
    const detail = await api(`/api/uploads/${upload.id}/`);
    return detail.download_url || detail.url || null;
  }

  function uploadItem(upload) {
    const li = document.createElement('li');
    li.className = 'upload';
    li.dataset.id = upload.id;
    li.dataset.key = upload.key;
    const isImage = (upload.content_type || '').startsWith('image/');
    const thumb = document.createElement(isImage ? 'img' : 'div');
    thumb.className = isImage ? 'thumb' : 'thumb thumb-placeholder';
    if (isImage) {
      thumb.alt = uploadName(upload);
      thumbnailUrl(upload)
        .then(url => {
          if (url) thumb.src = url;
        })
        .catch(err => console.error('thumbnail', err));
    } else {
      thumb.textContent = '📄';
    }
    const name = document.createElement('div');
    name.className = 'upload-name';
    name.textContent = uploadName(upload);
    const meta = document.createElement('div');
    meta.className = 'upload-meta';
    const dims = upload.image_width ? ` · ${upload.image_width}×${upload.image_height}` : '';
    meta.textContent =
      `${humanSize(upload.size)} · ${upload.content_type}${dims} · ` +
      new Date(upload.created_at).toLocaleString();
    const actions = document.createElement('div');
    actions.className = 'upload-actions';
    const open = document.createElement('a');
    open.href = '#';
    open.textContent = 'Download';
    open.addEventListener('click', async event => {
      event.preventDefault();
      const detail = await api(`/api/uploads/${upload.id}/`);
      window.open(detail.download_url || detail.url, '_blank', 'noopener');
    });
    const remove = document.createElement('a');
    remove.href = '#';
    remove.textContent = 'Delete';
    remove.addEventListener('click', async event => {
      event.preventDefault();
      await api(`/api/uploads/${upload.id}/`, { method: 'DELETE' });
      li.remove();
    });
    actions.append(open, remove);
    li.append(thumb, name, meta, actions);
    return li;
  }

  async function loadUploads(more = false) {
    const page = await api(more && nextPage ? nextPage : '/api/uploads/');
    const list = $('uploads');
    if (!more) list.replaceChildren();
    for (const upload of page.results) list.append(uploadItem(upload));
    nextPage = page.next || null;
    $('more').hidden = !nextPage;
    $('uploads-empty').hidden = list.children.length > 0;
  }

  // ---- Log in / out --------------------------------------------------------------------------

  function showLoggedOut(message) {
    store.removeItem('access');
    store.removeItem('refresh');
    ossClient = null;
    $('login-section').hidden = false;
    $('upload-section').hidden = true;
    $('uploads-section').hidden = true;
    $('whoami').hidden = true;
    const error = $('login-error');
    error.hidden = !message;
    error.textContent = message || '';
  }

  async function showLoggedIn() {
    const me = await api('/api/auth/me/');
    $('username').textContent = me.is_guest ? 'a guest' : me.username;
    $('whoami').hidden = false;
    $('login-section').hidden = true;
    $('upload-section').hidden = false;
    $('uploads-section').hidden = false;
    await loadUploads();
  }

  $('login-form').addEventListener('submit', async event => {
    event.preventDefault();
    const form = new FormData(event.target);
    const response = await fetch('/api/auth/login/', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username: form.get('username'), password: form.get('password') }),
    });
    if (!response.ok) {
      const err = await parseError(response);
      showLoggedOut(err.message);
      return;
    }
    const tokens = await response.json();
    store.setItem('access', tokens.access);
    store.setItem('refresh', tokens.refresh);
    $('login-error').hidden = true;
    await showLoggedIn();
  });

  // Present only when the server enables guests: a guest account with its own folder.
  const guestButton = $('guest-submit');
  if (guestButton) {
    guestButton.addEventListener('click', async () => {
      const response = await fetch('/api/auth/guest/', { method: 'POST' });
      if (!response.ok) {
        const err = await parseError(response);
        showLoggedOut(err.message);
        return;
      }
      const tokens = await response.json();
      store.setItem('access', tokens.access);
      store.setItem('refresh', tokens.refresh);
      $('login-error').hidden = true;
      await showLoggedIn();
    });
  }

  $('logout').addEventListener('click', async () => {
    const refresh = store.getItem('refresh');
    if (refresh) {
      await fetch('/api/auth/logout/', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ refresh }),
      });
    }
    showLoggedOut();
  });

  $('file-input').addEventListener('change', async event => {
    const files = Array.from(event.target.files);
    event.target.value = '';
    await Promise.all(files.map(uploadFile));
  });
  $('reload').addEventListener('click', () => loadUploads());
  $('more').addEventListener('click', () => loadUploads(true));

  if (store.getItem('access')) {
    showLoggedIn().catch(() => showLoggedOut());
  } else {
    showLoggedOut();
  }
})();
