/**
 * Xiji in JupyterLab: "Save environment as image", "Release this cluster" and the status bar's
 * usage item.
 *
 * - Save: a dialog (name, tag, description), then this server's Xiji handler
 *   (`{baseUrl}xiji/save-image`, see `jupyterlab_xiji/handlers.py`) saves the node, and the save
 *   job is followed with a progress notification until it is done, failed or cancelled.
 * - Release: after a confirmation, `{baseUrl}xiji/release` stops this server (every node of the
 *   cluster), then the page goes to the hub's home page.
 * - Usage: `{baseUrl}xiji/usage` every 15 s — the cluster's running time, cost so far and what its
 *   budget leaves, with a warning style near the budget and the release time once it is used up.
 *
 * The handlers call the hub with the server's own API token; the browser never sees a token.
 */

import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  Notification,
  showDialog,
  showErrorMessage,
  ToolbarButton
} from '@jupyterlab/apputils';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import { ILauncher } from '@jupyterlab/launcher';
import { IMainMenu } from '@jupyterlab/mainmenu';
import { ServerConnection } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';
import { Menu, Widget } from '@lumino/widgets';


/** The save command's id. */
export const SAVE_COMMAND = 'xiji:save-image';

/** The release command's id. */
export const RELEASE_COMMAND = 'xiji:release';

/** How often the status bar asks the hub for the cluster's usage. */
const USAGE_REFRESH_MS = 15_000;

const ICON_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16">' +
  '<path class="jp-icon3" fill="#616161" d="M17 3H5a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h14a2 2 0 0 0 2-2V7l-4-4zm-5 16a3 3 0 1 1 0-6 3 3 0 0 1 0 6zm3-10H5V5h10v4z"/>' +
  '</svg>';

const saveIcon = new LabIcon({ name: 'xiji:save-image', svgstr: ICON_SVG });

/** What the dialog asks for. */
interface ISaveForm {
  name: string;
  tag: string;
  description: string;
}

/** A save job as the hub describes it (the fields the extension uses). */
interface ISaveJob {
  id: string;
  state: string;
  reason?: string | null;
  percent: number;
  image: string;
  finished: boolean;
  image_id?: number | null;
}

/** Lower-case letters and digits, separated by '.', '_', '__' or '-'. */
const NAME_RULE = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const TAG_RULE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

/** The dialog's body: three labelled fields. */
class SaveFormWidget extends Widget implements Dialog.IBodyWidget<ISaveForm> {
  constructor() {
    super({ node: SaveFormWidget.createNode() });
    this.addClass('xiji-SaveForm');
  }

  private static createNode(): HTMLElement {
    const form = document.createElement('div');
    const field = (
      label: string,
      name: string,
      input: HTMLInputElement | HTMLTextAreaElement,
      help: string
    ) => {
      const wrapper = document.createElement('label');
      wrapper.className = 'xiji-SaveForm-field';
      const title = document.createElement('span');
      title.textContent = label;
      input.name = name;
      input.className = 'jp-mod-styled';
      const hint = document.createElement('small');
      hint.textContent = help;
      wrapper.append(title, input, hint);
      form.appendChild(wrapper);
    };
    const name = document.createElement('input');
    name.placeholder = 'my-env';
    name.required = true;
    field(
      'Name',
      'name',
      name,
      "Lower-case letters and digits, separated by '.', '_' or '-'"
    );
    const tag = document.createElement('input');
    tag.value = 'latest';
    field('Tag', 'tag', tag, 'e.g. v1 or latest');
    const description = document.createElement('textarea');
    description.rows = 3;
    description.placeholder = 'What is installed, what it is for';
    field('Description', 'description', description, '');
    const note = document.createElement('p');
    note.className = 'xiji-SaveForm-note';
    note.textContent =
      'Everything installed or changed outside the work directory is saved; ' +
      'files in the work directory and /tmp are not.';
    form.appendChild(note);
    return form;
  }

  getValue(): ISaveForm {
    const value = (name: string) =>
      (
        this.node.querySelector(`[name="${name}"]`) as
          | HTMLInputElement
          | HTMLTextAreaElement
          | null
      )?.value.trim() ?? '';
    return {
      name: value('name'),
      tag: value('tag') || 'latest',
      description: value('description')
    };
  }
}

/** Calls this server's Xiji handler; the hub's JSON error message on failure. */
async function request<T>(
  path: string,
  init: RequestInit = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'xiji', path);
  const response = await ServerConnection.makeRequest(url, init, settings);
  const text = await response.text();
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message =
      (data && (data.message || data.reason)) ||
      `${response.status} ${response.statusText}`;
    throw Object.assign(new Error(message), { status: response.status });
  }
  return data as T;
}

function describe(job: ISaveJob): string {
  switch (job.state) {
    case 'queued':
      return `Saving ${job.image}: waiting for another save to finish…`;
    case 'reading':
      return `Saving ${job.image}: reading the changes…`;
    case 'compressing':
      return `Saving ${job.image}: compressing (${job.percent}%)…`;
    case 'pushing':
      return `Saving ${job.image}: uploading (${job.percent}%)…`;
    case 'done':
      return `Saved ${job.image}; it is in "My images" on the hub.`;
    case 'cancelled':
      return `The save of ${job.image} was cancelled.`;
    default:
      return `The save of ${job.image} failed: ${job.reason ?? 'unknown error'}`;
  }
}

/** Follows a job with a notification until it ends. */
async function follow(job: ISaveJob): Promise<ISaveJob> {
  let cancelled = false;
  const cancel = {
    label: 'Cancel',
    caption: 'Stop this save; no image is kept',
    callback: (event: Event) => {
      event.preventDefault();
      if (!cancelled) {
        cancelled = true;
        void request<ISaveJob>(`save-jobs/${job.id}`, { method: 'DELETE' }).catch(
          () => undefined
        );
      }
    }
  };
  const id = Notification.emit(describe(job), 'in-progress', {
    autoClose: false,
    progress: job.percent / 100,
    actions: [cancel]
  });
  let failures = 0;
  const deadline = Date.now() + 6 * 60 * 60 * 1000;
  while (!job.finished && Date.now() < deadline) {
    await new Promise(resolve => setTimeout(resolve, 1000));
    try {
      job = await request<ISaveJob>(`save-jobs/${job.id}`);
      failures = 0;
    } catch (error) {
      failures += 1;
      if (failures >= 30) {
        Notification.update({
          id,
          message: `Lost track of the save: ${(error as Error).message}`,
          type: 'error',
          autoClose: false
        });
        throw error;
      }
      continue;
    }
    Notification.update({
      id,
      message: describe(job),
      type: job.finished
        ? job.state === 'done'
          ? 'success'
          : job.state === 'cancelled'
            ? 'warning'
            : 'error'
        : 'in-progress',
      progress: job.finished ? undefined : job.percent / 100,
      autoClose: job.finished ? (job.state === 'done' ? 15000 : false) : false,
      actions: job.finished ? [] : [cancel]
    });
  }
  return job;
}

/** The whole flow: dialog, request, progress. */
async function saveImage(): Promise<void> {
  const result = await showDialog<ISaveForm>({
    title: 'Save environment as image',
    body: new SaveFormWidget(),
    buttons: [
      Dialog.cancelButton(),
      Dialog.okButton({ label: 'Save image' })
    ],
    focusNodeSelector: 'input[name="name"]'
  });
  if (!result.button.accept || !result.value) {
    return;
  }
  const form = result.value;
  if (!NAME_RULE.test(form.name) || form.name.length > 64) {
    await showErrorMessage(
      'Invalid image name',
      `"${form.name}": use lower-case letters and digits, separated by '.', '_' or '-' (e.g. my-env), at most 64 characters.`
    );
    return;
  }
  if (!TAG_RULE.test(form.tag)) {
    await showErrorMessage(
      'Invalid tag',
      `"${form.tag}": up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'.`
    );
    return;
  }
  let job: ISaveJob;
  try {
    job = await request<ISaveJob>('save-image', {
      method: 'POST',
      body: JSON.stringify(form),
      headers: { 'Content-Type': 'application/json' }
    });
  } catch (error) {
    await showErrorMessage('Cannot save the image', (error as Error).message);
    return;
  }
  const last = await follow(job);
  if (last.state === 'failed') {
    await showErrorMessage(
      'The image was not saved',
      last.reason ?? 'unknown error'
    );
  }
}

/** The hub's home page (where the page goes once the cluster is released). */
function hubHome(): string {
  const prefix = PageConfig.getOption('hubPrefix') || '/hub/';
  return URLExt.join(PageConfig.getOption('hubHost') || '', prefix, 'home');
}

/** Asks, then releases this server: every node stops and the page goes to the hub. */
async function release(): Promise<void> {
  const result = await showDialog({
    title: 'Release this cluster?',
    body:
      'Every node of this cluster stops and its CPUs, memory and GPUs are given back. ' +
      'Files in the work directory are kept; unsaved notebooks and running kernels are lost.',
    buttons: [
      Dialog.cancelButton(),
      Dialog.warnButton({ label: 'Release' })
    ]
  });
  if (!result.button.accept) {
    return;
  }
  const id = Notification.emit('Releasing the cluster…', 'in-progress', {
    autoClose: false
  });
  const released = () => {
    Notification.update({
      id,
      message: 'The cluster is released. Going back to the hub…',
      type: 'success',
      autoClose: false
    });
    window.setTimeout(() => window.location.assign(hubHome()), 1500);
  };
  try {
    await request<unknown>('release', { method: 'POST' });
  } catch (error) {
    // Stopping this server ends the very process that asked: the answer is then lost on the
    // way (the proxy's 502, or no answer at all). A refusal from the hub, or the server
    // extension not reaching the hub, is a failure.
    const status = (error as { status?: number }).status;
    const unreachable = /Cannot reach the hub/.test((error as Error).message);
    if ((status === undefined || status >= 502) && !unreachable) {
      released();
      return;
    }
    Notification.dismiss(id);
    await showErrorMessage(
      'Cannot release the cluster',
      (error as Error).message
    );
    return;
  }
  released();
}

/** The hub's answer about this server's usage (`GET /hub/api/users/{name}/usage/live`). */
interface ILiveUsage {
  running?: boolean;
  running_seconds: number;
  cost: number;
  cost_micros?: number;
  price_per_hour: number;
  budget: null | {
    limit: number;
    used: number;
    left: number;
    state: 'ok' | 'warning' | 'exceeded';
    release_at?: string | null;
  };
  /** The release policy the cluster holds (`automatic`: closing its last page releases it). */
  release_policy?: 'automatic' | 'manual' | 'on_logout' | null;
}

/** `1:02:03` or `12:03`. */
export function durationText(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

/** Billing units with two decimals (more when below 0.01 and not zero). */
export function unitsText(units: number): string {
  if (units !== 0 && Math.abs(units) < 0.01) {
    return units.toPrecision(2);
  }
  return units.toFixed(2);
}

/** The status bar's item: running time · cost so far · budget left. */
class UsageStatus extends Widget {
  constructor() {
    super();
    this.addClass('xiji-UsageStatus');
    this.addClass('jp-StatusBar-TextItem');
    this.node.id = 'xiji-usage-status';
    this.node.title = 'This cluster: running time, cost so far, budget left';
    this.hide();
  }

  /** Starts asking the hub, now and every 15 s; the running time ticks every second. */
  start(): void {
    // Under the automatic release policy, closing the last page of the cluster releases it:
    // the browser asks before the page goes (it shows its own words).
    window.addEventListener('beforeunload', event => {
      if (this.usage?.release_policy === 'automatic') {
        event.preventDefault();
        event.returnValue = '';
      }
    });
    void this.refresh();
    window.setInterval(() => void this.refresh(), USAGE_REFRESH_MS);
    window.setInterval(() => this.render(), 1000);
  }

  private async refresh(): Promise<void> {
    try {
      this.usage = await request<ILiveUsage>('usage');
      this.fetchedAt = Date.now();
      this.failures = 0;
    } catch {
      // Not under a hub, or the hub is away for a moment: keep the last answer a while.
      this.failures += 1;
      if (this.failures >= 3) {
        this.usage = null;
      }
    }
    this.render();
  }

  private render(): void {
    const usage = this.usage;
    if (!usage) {
      this.hide();
      return;
    }
    const elapsed =
      usage.running === false ? 0 : (Date.now() - this.fetchedAt) / 1000;
    const parts = [
      `Running ${durationText(usage.running_seconds + elapsed)}`,
      `${unitsText(usage.cost)} spent`
    ];
    const budget = usage.budget;
    this.removeClass('xiji-mod-warning');
    this.removeClass('xiji-mod-exceeded');
    let title =
      `Running for ${durationText(usage.running_seconds + elapsed)}; ` +
      `cost so far ${unitsText(usage.cost)} (${unitsText(usage.price_per_hour)} per hour)`;
    if (budget) {
      if (budget.state === 'exceeded') {
        this.addClass('xiji-mod-exceeded');
        const at = budget.release_at ? new Date(budget.release_at) : null;
        parts.push(
          at && !isNaN(at.getTime())
            ? `budget used up: release at ${at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}`
            : 'budget used up'
        );
      } else {
        if (budget.state === 'warning') {
          this.addClass('xiji-mod-warning');
        }
        parts.push(`${unitsText(budget.left)} left`);
      }
      title +=
        `; budget ${unitsText(budget.used)} of ${unitsText(budget.limit)} used, ` +
        `${unitsText(budget.left)} left`;
    } else {
      title += '; no budget';
    }
    this.node.textContent = parts.join(' · ');
    this.node.dataset.state = budget ? budget.state : 'none';
    this.node.title = title;
    this.show();
  }

  private usage: ILiveUsage | null = null;
  private fetchedAt = 0;
  private failures = 0;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyterlab-xiji:plugin',
  description:
    'Save the running environment as an image, release the cluster, show its usage',
  autoStart: true,
  requires: [ICommandPalette],
  optional: [IMainMenu, ILauncher, IStatusBar],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette,
    mainMenu: IMainMenu | null,
    launcher: ILauncher | null,
    statusBar: IStatusBar | null
  ) => {
    const { commands } = app;
    commands.addCommand(SAVE_COMMAND, {
      label: 'Save environment as image…',
      caption:
        'Save the software installed in this node as a new image you can start clusters from',
      icon: saveIcon,
      execute: () => saveImage()
    });
    commands.addCommand(RELEASE_COMMAND, {
      label: 'Release this cluster…',
      caption:
        'Stop every node of this cluster and give its resources back (files in the work directory are kept)',
      execute: () => release()
    });
    palette.addItem({ command: SAVE_COMMAND, category: 'Xiji' });
    palette.addItem({ command: RELEASE_COMMAND, category: 'Xiji' });
    if (mainMenu) {
      const menu = new Menu({ commands });
      menu.id = 'xiji-menu';
      menu.title.label = 'Xiji';
      menu.addItem({ command: SAVE_COMMAND });
      menu.addItem({ type: 'separator' });
      menu.addItem({ command: RELEASE_COMMAND });
      mainMenu.addMenu(menu, true, { rank: 900 });
      mainMenu.fileMenu.addGroup([{ command: SAVE_COMMAND }], 90);
      mainMenu.fileMenu.addGroup([{ command: RELEASE_COMMAND }], 91);
    }
    if (statusBar) {
      const item = new UsageStatus();
      statusBar.registerStatusItem('jupyterlab-xiji:usage', {
        item,
        align: 'left',
        rank: 900
      });
      item.start();
    }
    if (launcher) {
      launcher.add({ command: SAVE_COMMAND, category: 'Xiji', rank: 1 });
    }
    // A button in every notebook's toolbar.
    const button: DocumentRegistry.WidgetExtension = {
      createNew: (panel: any) => {
        const widget = new ToolbarButton({
          icon: saveIcon,
          tooltip: 'Save environment as image',
          className: 'xiji-SaveImageButton',
          onClick: () => void commands.execute(SAVE_COMMAND)
        });
        panel.toolbar.insertItem(10, 'xijiSaveImage', widget);
        return widget;
      }
    };
    app.docRegistry.addWidgetExtension('Notebook', button);
  }
};

export default plugin;
