// Push approval: the waiting page follows its request over server-sent
// events and continues by itself once the phone approves. Without
// JavaScript the page's Continue button does the same.
const holder = document.getElementById('push');
const form = document.getElementById('push-form');
if (holder && form && window.EventSource) {
  const status = document.getElementById('push-status');
  const source = new EventSource(holder.dataset.events);
  source.addEventListener('status', (event) => {
    const state = JSON.parse(event.data).status;
    if (state === 'pending') {
      return;
    }
    source.close();
    if (state === 'approved') {
      status.textContent = holder.dataset.approved;
    }
    // Approved: the server finishes signing in; denied: it ends the
    // attempt and says why on the sign-in page (a wrong number apart from
    // a "No"); expired: it says so.
    form.submit();
  });
}
