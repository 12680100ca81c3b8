import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { ILauncher } from '@jupyterlab/launcher';
import { ServerConnection } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { marketIcon, operationsIcon, quickstartIcon } from './icons';

const CATEGORY = 'EnergyOps';
const HEALTH_POLL_MS = 15000;
const RECONNECT_MAX_MS = 30000;

/** Notebooks the launcher opens, relative to the server's root directory. */
const DASHBOARDS: { id: string; label: string; path: string; icon: LabIcon }[] = [
  {
    id: 'energyops:open-operations',
    label: 'Operations dashboard',
    path: 'dashboards/operations.ipynb',
    icon: operationsIcon
  },
  {
    id: 'energyops:open-market',
    label: 'Market dashboard',
    path: 'dashboards/market.ipynb',
    icon: marketIcon
  }
];
const QUICKSTART = 'notebooks/quickstart.ipynb';

export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'offline';

/** What the status-bar item shows: the events socket's state and the running runs. */
export class EnergyOpsStatus extends Widget {
  private _state: ConnectionState = 'connecting';
  private _running: number | null = null;
  private _queued: number | null = null;

  constructor() {
    super();
    this.addClass('energyops-status');
    this.node.setAttribute('data-energyops-status', '');
    this.render();
  }

  set state(value: ConnectionState) {
    this._state = value;
    this.render();
  }

  setQueue(running: number | null, queued: number | null): void {
    this._running = running;
    this._queued = queued;
    this.render();
  }

  private render(): void {
    const dot = document.createElement('span');
    dot.className = `energyops-dot energyops-dot-${this._state}`;
    const text = document.createElement('span');
    const runs = this._running === null ? '?' : String(this._running);
    text.textContent = `EnergyOps ${this._state} · ${runs} running`;
    this.node.replaceChildren(dot, text);
    const queued = this._queued === null ? '' : `, ${this._queued} queued`;
    this.node.title = `EnergyOps events: ${this._state}; runs: ${runs} running${queued}`;
    this.node.dataset.state = this._state;
    this.node.dataset.running = runs;
  }
}

/** Keeps the status item current: jupyter_server's event socket, plus health polling. */
class StatusController {
  private _socket: WebSocket | null = null;
  private _retryMs = 1000;
  private _timer: number | null = null;
  private _refreshPending = false;
  private _disposed = false;

  constructor(
    private readonly item: EnergyOpsStatus,
    private readonly settings: ServerConnection.ISettings
  ) {
    this.connect();
    void this.refresh();
    this._timer = window.setInterval(() => void this.refresh(), HEALTH_POLL_MS);
  }

  dispose(): void {
    this._disposed = true;
    if (this._timer !== null) {
      window.clearInterval(this._timer);
    }
    this._socket?.close();
  }

  /** GET /energyops/api/health and show its queue. */
  async refresh(): Promise<void> {
    const url = URLExt.join(this.settings.baseUrl, 'energyops/api/health');
    try {
      const response = await ServerConnection.makeRequest(url, {}, this.settings);
      if (!response.ok) {
        throw new Error(`health: HTTP ${response.status}`);
      }
      const health = await response.json();
      const queue = health.queue ?? {};
      this.item.setQueue(
        typeof queue.running === 'number' ? queue.running : null,
        typeof queue.queued === 'number' ? queue.queued : null
      );
    } catch (reason) {
      console.warn('EnergyOps: health check failed', reason);
      this.item.setQueue(null, null);
    }
  }

  private connect(): void {
    if (this._disposed) {
      return;
    }
    let url = URLExt.join(this.settings.wsUrl, 'api/events/subscribe');
    const token = this.settings.token;
    if (this.settings.appendToken && token !== '') {
      url = url + `?token=${encodeURIComponent(token)}`;
    }
    const socket = new WebSocket(url);
    this._socket = socket;
    socket.onopen = () => {
      this._retryMs = 1000;
      this.item.state = 'connected';
      void this.refresh();
    };
    socket.onmessage = (message: MessageEvent) => this.onEvent(message.data);
    socket.onclose = () => {
      if (this._disposed) {
        return;
      }
      this.item.state = navigator.onLine ? 'reconnecting' : 'offline';
      window.setTimeout(() => this.connect(), this._retryMs);
      this._retryMs = Math.min(this._retryMs * 2, RECONNECT_MAX_MS);
    };
  }

  /** A run lifecycle event: ask the server for the exact queue figures (debounced). */
  private onEvent(raw: unknown): void {
    let event: { schema_id?: string };
    try {
      event = JSON.parse(String(raw));
    } catch {
      return;
    }
    const schema = event.schema_id ?? '';
    if (!schema.includes('energyops') || this._refreshPending) {
      return;
    }
    this._refreshPending = true;
    window.setTimeout(() => {
      this._refreshPending = false;
      void this.refresh();
    }, 250);
  }
}

function addLauncherItems(app: JupyterFrontEnd, launcher: ILauncher | null): void {
  const { commands } = app;
  const base = PageConfig.getBaseUrl();
  DASHBOARDS.forEach((dashboard, rank) => {
    commands.addCommand(dashboard.id, {
      label: dashboard.label,
      caption: `Open ${dashboard.path} as a Voila dashboard`,
      icon: dashboard.icon,
      execute: () => {
        const url = URLExt.join(base, 'voila/render', URLExt.encodeParts(dashboard.path));
        window.open(url, '_blank', 'noopener');
      }
    });
    launcher?.add({ command: dashboard.id, category: CATEGORY, rank });
  });
  commands.addCommand('energyops:open-quickstart', {
    label: 'Quickstart notebook',
    caption: `Open ${QUICKSTART}`,
    icon: quickstartIcon,
    execute: () => commands.execute('docmanager:open', { path: QUICKSTART })
  });
  launcher?.add({
    command: 'energyops:open-quickstart',
    category: CATEGORY,
    rank: DASHBOARDS.length
  });
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'energyops-labextension:plugin',
  description: 'EnergyOps launcher entries and live status.',
  autoStart: true,
  optional: [ILauncher, IStatusBar],
  activate: (
    app: JupyterFrontEnd,
    launcher: ILauncher | null,
    statusBar: IStatusBar | null
  ) => {
    addLauncherItems(app, launcher);
    if (statusBar) {
      const item = new EnergyOpsStatus();
      statusBar.registerStatusItem('energyops-labextension:status', {
        item,
        align: 'left',
        rank: 50
      });
      const controller = new StatusController(item, app.serviceManager.serverSettings);
      item.disposed.connect(() => controller.dispose());
    }
  }
};

export default plugin;
