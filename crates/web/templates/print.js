// The "Print" button on the backup-codes page: shown only when scripts run;
// without them the page says to use the browser's own Print command.
const button = document.getElementById('print-codes');
if (button) {
  button.hidden = false;
  button.addEventListener('click', () => window.print());
}
