/**
 * Xiji in JupyterLab: "Save environment as image".
 *
 * The command opens a dialog (name, tag, description), asks this server's Xiji handler
 * (`{baseUrl}xiji/save-image`, see `jupyterlab_xiji/handlers.py`) to save the node, then
 * follows the save job with a progress notification until it is done, failed or cancelled.
 * The handler calls the hub with the server's own API token; the browser never sees a token.
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
import { URLExt } from '@jupyterlab/coreutils';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import { ILauncher } from '@jupyterlab/launcher';
import { IMainMenu } from '@jupyterlab/mainmenu';
import { ServerConnection } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';
import { Menu, Widget } from '@lumino/widgets';


/** The command's id. */
export const SAVE_COMMAND = 'xiji:save-image';

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
    throw new Error(message);
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

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyterlab-xiji:plugin',
  description: 'Save the running environment as an image',
  autoStart: true,
  requires: [ICommandPalette],
  optional: [IMainMenu, ILauncher],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette,
    mainMenu: IMainMenu | null,
    launcher: ILauncher | null
  ) => {
    const { commands } = app;
    commands.addCommand(SAVE_COMMAND, {
      label: 'Save environment as image…',
      caption:
        'Save the software installed in this node as a new image you can start clusters from',
      icon: saveIcon,
      execute: () => saveImage()
    });
    palette.addItem({ command: SAVE_COMMAND, category: 'Xiji' });
    if (mainMenu) {
      const menu = new Menu({ commands });
      menu.id = 'xiji-menu';
      menu.title.label = 'Xiji';
      menu.addItem({ command: SAVE_COMMAND });
      mainMenu.addMenu(menu, true, { rank: 900 });
      mainMenu.fileMenu.addGroup([{ command: SAVE_COMMAND }], 90);
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
